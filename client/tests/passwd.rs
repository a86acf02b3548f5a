//! `canopy passwd` end to end: the binary writes a password file that the broker's own
//! password table accepts. Passwords go through `--stdin`; the no-terminal case is checked
//! to fail with a hint rather than hang.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use canopy_broker::auth::Passwords;

const BIN: &str = env!("CARGO_BIN_EXE_canopy");

fn dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!(
        "canopy-passwd-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn passwd(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .arg("passwd")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn table(path: &Path) -> Passwords {
    Passwords::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn create_add_change_and_delete_users_the_broker_can_verify() {
    let d = dir("cycle");
    let file = d.join("passwd");
    let f = file.to_str().unwrap();

    let o = passwd(&["-c", "--stdin", f, "alice"], Some("apple\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(table(&file).verify("alice", b"apple"));

    let o = passwd(&["--stdin", f, "bob"], Some("banana\r\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    let t = table(&file);
    assert!(t.verify("alice", b"apple") && t.verify("bob", b"banana"));

    let o = passwd(&["--stdin", f, "alice"], Some("cherry\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    let t = table(&file);
    assert!(t.verify("alice", b"cherry") && !t.verify("alice", b"apple"));
    assert_eq!(t.len(), 2);

    let o = passwd(&["-D", f, "bob"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = table(&file);
    assert!(!t.contains("bob") && t.contains("alice"));

    let o = passwd(&["-D", f, "bob"], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not in"), "{}", stderr(&o));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn create_replaces_an_existing_file() {
    let d = dir("create");
    let file = d.join("passwd");
    let f = file.to_str().unwrap();
    assert!(
        passwd(&["-c", "--stdin", f, "a"], Some("1\n"))
            .status
            .success()
    );
    assert!(
        passwd(&["-c", "--stdin", f, "b"], Some("2\n"))
            .status
            .success()
    );
    let t = table(&file);
    assert!(!t.contains("a") && t.verify("b", b"2"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn refusals_name_the_problem() {
    let d = dir("refuse");
    let file = d.join("passwd");
    let f = file.to_str().unwrap();
    // (args, stdin, expected stderr fragment)
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (&["--stdin", f, "a"], Some("x\n"), "use -c to create it"),
        (
            &["-c", "--stdin", f, "a:b"],
            Some("x\n"),
            "may not contain ':'",
        ),
        (
            &["-c", "--stdin", f, "a"],
            Some("\n"),
            "the password is empty",
        ),
        (&["-c", f, "a"], None, "use --stdin"),
        (&["-c", "-D", f, "a"], None, "cannot be used with"),
    ];
    for (args, input, needle) in cases {
        let o = passwd(args, *input);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    assert!(!file.exists(), "no refused run may write the file");

    std::fs::write(&file, "alice:plaintext\n").unwrap();
    let o = passwd(&["--stdin", f, "bob"], Some("x\n"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains(":1:"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "alice:plaintext\n");
    let _ = std::fs::remove_dir_all(&d);
}
