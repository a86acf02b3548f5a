use std::time::Duration;

use canopy_model::password::hash_password;

use super::*;

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("canopy-auth-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn quick() -> ThrottlePolicy {
    ThrottlePolicy {
        free_failures: 1,
        base_delay: Duration::from_millis(200),
        ..ThrottlePolicy::default()
    }
}

fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

#[tokio::test]
async fn login_matrix() {
    let files = Files::new("matrix");
    let pw = files.write(
        "passwd",
        &format!("alice:{}\n", hash_password(b"apple").unwrap()),
    );
    let with = Auth::with_files(Some(pw), None, ThrottlePolicy::default()).unwrap();
    let without = Auth::with_files(None, None, ThrottlePolicy::default()).unwrap();
    let yes = Login::Accepted {
        authenticated: true,
    };
    let trusted = Login::Accepted {
        authenticated: false,
    };
    // (auth, user, password, anonymous allowed, outcome)
    type Case<'a> = (&'a Auth, Option<&'a str>, Option<&'a [u8]>, bool, Login);
    let cases: &[Case] = &[
        (&with, Some("alice"), Some(b"apple"), false, yes),
        (&with, Some("alice"), Some(b"apple"), true, yes),
        (
            &with,
            Some("alice"),
            Some(b"pear"),
            true,
            Login::BadCredentials,
        ),
        (&with, Some("alice"), None, true, Login::BadCredentials),
        (
            &with,
            Some("bob"),
            Some(b"apple"),
            true,
            Login::BadCredentials,
        ),
        (&with, None, None, true, trusted),
        (&with, None, None, false, Login::NotAuthorized),
        (&without, Some("anyone"), None, true, trusted),
        (
            &without,
            Some("anyone"),
            Some(b"x"),
            false,
            Login::BadCredentials,
        ),
        (&without, None, None, true, trusted),
        (&without, None, None, false, Login::NotAuthorized),
    ];
    for (i, &(auth, user, password, anon, want)) in cases.iter().enumerate() {
        // A distinct source each, so the throttle never delays the table.
        let peer = IpAddr::from([10, 0, 0, u8::try_from(i).unwrap()]);
        assert_eq!(
            auth.login(peer, user, password, anon).await,
            want,
            "case {i}: {user:?} {password:?} anonymous {anon}"
        );
    }
    assert_eq!(with.failed_logins(), 4);
    assert_eq!(without.failed_logins(), 2);
}

#[test]
fn reason_codes_per_protocol() {
    let ok = Login::Accepted {
        authenticated: false,
    };
    assert_eq!((ok.reason_v5(), ok.return_code_v3()), (0x00, 0));
    let bad = Login::BadCredentials;
    assert_eq!((bad.reason_v5(), bad.return_code_v3()), (0x86, 4));
    let no = Login::NotAuthorized;
    assert_eq!((no.reason_v5(), no.return_code_v3()), (0x87, 5));
}

#[tokio::test(start_paused = true)]
async fn repeated_failures_from_one_source_are_answered_ever_later() {
    let files = Files::new("throttle");
    let pw = files.write("passwd", &format!("a:{}\n", hash_password(b"x").unwrap()));
    let auth = Auth::with_files(Some(pw), None, quick()).unwrap();
    let mut waits = Vec::new();
    for _ in 0..4 {
        let t = tokio::time::Instant::now();
        auth.login(loopback(), Some("a"), Some(b"wrong"), false)
            .await;
        waits.push(t.elapsed().as_millis() / 100 * 100);
    }
    assert_eq!(waits, [0, 200, 400, 800]);
    let t = tokio::time::Instant::now();
    auth.login(
        IpAddr::from([192, 0, 2, 1]),
        Some("a"),
        Some(b"wrong"),
        false,
    )
    .await;
    assert!(t.elapsed() < Duration::from_millis(100));
}

#[test]
fn reload_swaps_rules_and_keeps_the_old_ones_when_a_file_fails() {
    let files = Files::new("reload");
    let acl = files.write("acl", "topic read a/#\n");
    let pw = files.write("passwd", &format!("u:{}\n", hash_password(b"1").unwrap()));
    let auth = Auth::with_files(Some(pw.clone()), Some(acl.clone()), quick()).unwrap();
    let before = auth.rules();
    assert!(before.check(None, "c", Access::Read, "a/b"));
    assert!(!before.check(None, "c", Access::Read, "b"));

    files.write("acl", "topic read b\n");
    assert!(auth.reload().is_empty());
    let after = auth.rules();
    assert!(after.check(None, "c", Access::Read, "b"));
    assert!(!after.check(None, "c", Access::Read, "a/b"));
    // A reader holding the old snapshot keeps a consistent view.
    assert!(before.check(None, "c", Access::Read, "a/b"));

    files.write("acl", "topic read b\nbogus line\n");
    files.write("passwd", &format!("v:{}\n", hash_password(b"2").unwrap()));
    let errors = auth.reload();
    assert_eq!(errors.len(), 1);
    let message = errors[0].to_string();
    assert!(
        message.contains(&format!("{}:2:", acl.display())),
        "{message}"
    );
    let kept = auth.rules();
    assert!(kept.check(None, "c", Access::Read, "b"), "old ACL kept");
    let users = kept.passwords.as_ref().unwrap();
    assert!(
        users.contains("v") && !users.contains("u"),
        "passwords still reloaded"
    );

    files.write("acl", "topic read c\n");
    std::fs::remove_file(&pw).unwrap();
    let errors = auth.reload();
    assert!(
        matches!(errors.as_slice(), [AuthError::Io { .. }]),
        "{errors:?}"
    );
    assert!(auth.rules().passwords.as_ref().unwrap().contains("v"));
    assert!(auth.rules().check(None, "c", Access::Read, "c"));
}

#[test]
fn load_refuses_a_bad_file_naming_it_and_the_line() {
    let files = Files::new("load");
    let pw = files.write("passwd", "# ok\nalice:plaintext\n");
    let err = Auth::with_files(Some(pw.clone()), None, quick()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2: ", pw.display())),
        "{err}"
    );
    let missing = files.dir.join("nope");
    let err = Auth::with_files(None, Some(missing), quick()).unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn without_an_acl_file_everything_is_allowed() {
    let rules = Rules::default();
    assert!(rules.check(None, "c", Access::Write, "$SYS/x"));
    assert!(rules.check_subscribe(Some("u"), "c", "#"));
}
