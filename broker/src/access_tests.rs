//! The access table: one row per rule, for clients, admins and embedded bridges.

use super::*;

fn access(admins: &[&str]) -> Access {
    let mut cfg = Config::ephemeral();
    cfg.config_docs.admins = admins.iter().map(|s| s.to_string()).collect();
    Access::new(&cfg)
}

fn who(client_id: &str) -> Who<'_> {
    Who {
        client_id,
        user: None,
        bridge: false,
    }
}

fn nobody_here(_: &str) -> bool {
    false
}

fn publish(a: &Access, client: &str, topic: &str) -> bool {
    let req = Request::Publish {
        topic,
        forwarded: false,
    };
    a.check(&who(client), &req, &nobody_here).is_ok()
}

fn subscribe(a: &Access, client: &str, filter: &str) -> bool {
    a.check(&who(client), &Request::Subscribe { filter }, &nobody_here)
        .is_ok()
}

#[test]
fn publish_table() {
    let a = access(&["admin"]);
    let rows: &[(&str, &str, bool)] = &[
        ("dev", "a/b", true),
        ("dev", "$SYS/broker/uptime", false),
        ("admin", "$SYS/broker/uptime", false),
        ("dev", "$status/dev", false),
        ("admin", "$status/dev", false),
        ("dev", "$config/dev", false),
        ("admin", "$config/dev", true),
        ("admin", "$config/default", true),
        ("dev", "$ctl/subscribe", true),
        ("dev", "$ctl/unsubscribe", true),
        ("dev", "$ctl/errors/dev", false),
        ("dev", "$resource/lic/acquire", true),
        ("dev", "$resource/lic/reserve", true),
        ("dev", "$resource/lic/release", true),
        ("dev", "$resource/lic", false),
        ("dev", "$resource/lic/client/dev", false),
        ("dev", "$resource//acquire", false),
        ("site-local", "$SYS/metabroker/site/state", true),
        ("site-local", "$SYS/metabroker/other/state", false),
        ("site", "$SYS/metabroker/site/state", false),
        ("dev", "$interest/subscriptions", false),
        ("site-local", "$interest/subscriptions", false),
        ("admin", "$interest/subscriptions", false),
        ("site-local", "$interest/applied/site", true),
        ("site-local", "$interest/applied/site/x", false),
        ("dev", "$interest/applied/site", false),
        ("dev", "$dashboard/clients", true),
        ("dev", "$dashboard/clients/reply", false),
        ("dev", "$dashboard/other", false),
    ];
    for &(client, topic, allowed) in rows {
        assert_eq!(
            publish(&a, client, topic),
            allowed,
            "{client} publish {topic}"
        );
    }
}

#[test]
fn wills_obey_the_publish_rules() {
    let a = access(&[]);
    for (topic, allowed) in [
        ("w/dev", true),
        ("$SYS/x", false),
        ("$status/other", false),
        ("$config/dev", false),
    ] {
        let ok = a
            .check(&who("dev"), &Request::Will { topic }, &nobody_here)
            .is_ok();
        assert_eq!(ok, allowed, "will on {topic}");
    }
}

#[test]
fn subscribe_table() {
    let a = access(&["admin"]);
    let rows: &[(&str, &str, bool)] = &[
        ("dev", "#", true),
        ("dev", "a/#", true),
        ("dev", "$SYS/#", true),
        ("dev", "$status/#", true),
        ("dev", "$config/dev", true),
        ("dev", "$config/other", false),
        ("dev", "$config/#", false),
        ("dev", "$config/+", false),
        ("dev", "$share/g/$config/other", false),
        ("admin", "$config/#", true),
        ("dev", "$ctl/errors/dev", true),
        ("dev", "$ctl/errors/other", false),
        ("dev", "$ctl/errors/+", false),
        ("dev", "$ctl/#", false),
        ("dev", "$resource/lic", true),
        ("dev", "$resource/lic/client/dev", true),
        ("dev", "$resource/lic/client/other", false),
        ("dev", "$resource/lic/client/+", false),
        ("dev", "$resource/+/client/dev", false),
        ("dev", "$resource/#", false),
        ("dev", "$resource/+", true),
        ("dev", "$interest/subscriptions", false),
        ("dev", "$interest/#", false),
        ("dev", "$share/g/$interest/subscriptions", false),
        ("site-local", "$interest/subscriptions", true),
        ("site-local", "$interest/#", true),
        ("admin", "$interest/subscriptions", true),
        ("site-remote", "$interest/subscriptions", false),
        ("dev", "$dashboard/clients/reply", true),
        ("dev", "$dashboard/clients", false),
        ("dev", "$dashboard/#", false),
    ];
    for &(client, filter, allowed) in rows {
        assert_eq!(
            subscribe(&a, client, filter),
            allowed,
            "{client} subscribe {filter}"
        );
    }
}

#[test]
fn forwarded_hierarchy_documents_are_accepted_except_local_truth_and_sys() {
    let a = access(&[]);
    let near = |id: &str| id == "near";
    let fwd = |topic| Request::Publish {
        topic,
        forwarded: true,
    };
    assert!(a.check(&who("b"), &fwd("$status/far"), &near).is_ok());
    assert!(a.check(&who("b"), &fwd("$status/near"), &near).is_err());
    assert!(a.check(&who("b"), &fwd("$config/dev"), &near).is_ok());
    assert!(
        a.check(&who("b"), &fwd("$SYS/broker/uptime"), &near)
            .is_err()
    );
    assert!(
        a.check(&who("b"), &fwd("$interest/subscriptions"), &near)
            .is_err()
    );
}

#[derive(Debug)]
struct DenyTopic(&'static str);

impl Acl for DenyTopic {
    fn allows(&self, _who: &Who<'_>, req: &Request<'_>) -> bool {
        !matches!(req, Request::Publish { topic, .. } | Request::Deliver { topic } if *topic == self.0)
    }
}

#[test]
fn the_acl_is_asked_only_after_the_broker_rules_allow() {
    let mut a = access(&[]);
    a.set_acl(Some(Arc::new(DenyTopic("a/secret"))));
    assert!(!publish(&a, "dev", "a/secret"));
    assert!(publish(&a, "dev", "a/open"));
    // The broker's own rule answers first, whatever the ACL says.
    let err = a
        .check(
            &who("dev"),
            &Request::Publish {
                topic: "$SYS/x",
                forwarded: false,
            },
            &nobody_here,
        )
        .unwrap_err();
    assert_eq!(err, Denied("$SYS topics are written by the broker only"));
    let deliver = Request::Deliver { topic: "a/secret" };
    assert!(a.check(&who("dev"), &deliver, &nobody_here).is_err());
}

fn as_user<'a>(client_id: &'a str, user: Option<&'a str>) -> Who<'a> {
    Who {
        client_id,
        user,
        bridge: false,
    }
}

#[test]
fn presence_publish_table() {
    let on = access(&[]);
    let mut cfg = Config::ephemeral();
    cfg.presence.enabled = false;
    let off = Access::new(&cfg);
    // (client, user, topic, allowed with the agent, allowed without it)
    let rows: &[(&str, Option<&str>, &str, bool, bool)] = &[
        (
            "a1",
            Some("alice"),
            "$presence/alice/devices/phone",
            true,
            true,
        ),
        (
            "b1",
            Some("bob"),
            "$presence/alice/devices/phone",
            false,
            false,
        ),
        ("anon", None, "$presence/alice/devices/phone", true, true),
        ("a1", Some("alice"), "$presence/alice/watchers", true, true),
        ("b1", Some("bob"), "$presence/alice/watchers", false, false),
        (
            "a1",
            Some("alice"),
            "$presence/alice/requests/bob",
            true,
            true,
        ),
        (
            "b1",
            Some("bob"),
            "$presence/alice/requests/bob",
            false,
            false,
        ),
        ("a1", Some("alice"), "$presence/alice", false, true),
        ("b1", Some("bob"), "$presence/alice", false, false),
        ("anon", None, "$presence/alice", false, true),
        ("a1", Some("alice"), "$presence/alice/agent", false, true),
        (
            "a1",
            Some("alice"),
            "$presence/alice/devices/",
            false,
            false,
        ),
        ("a1", Some("alice"), "$presence/alice/other", false, false),
        (
            "a1",
            Some("alice"),
            "$presence/alice/devices/phone/x",
            false,
            false,
        ),
        ("a1", Some("alice"), "$presence", false, false),
    ];
    for &(client, user, topic, with_agent, without) in rows {
        let w = as_user(client, user);
        let req = Request::Publish {
            topic,
            forwarded: false,
        };
        assert_eq!(
            on.check(&w, &req, &nobody_here).is_ok(),
            with_agent,
            "{client} publish {topic} (agent)"
        );
        assert_eq!(
            off.check(&w, &req, &nobody_here).is_ok(),
            without,
            "{client} publish {topic} (no agent)"
        );
        let will = Request::Will { topic };
        assert_eq!(
            on.check(&w, &will, &nobody_here).is_ok(),
            with_agent,
            "{client} will {topic}"
        );
    }
    // Forwarded from another broker: the hierarchy carries presence up.
    let req = Request::Publish {
        topic: "$presence/alice",
        forwarded: true,
    };
    assert!(on.check(&who("leaf-bridge"), &req, &nobody_here).is_ok());
}

#[test]
fn presence_subscribe_table() {
    let mut cfg = Config::ephemeral();
    cfg.config_docs.admins = vec!["admin".into()];
    let a = Access::new(&cfg);
    let rows: &[(&str, Option<&str>, &str, bool)] = &[
        ("b1", Some("bob"), "$presence/alice", true),
        ("anon", None, "$presence/alice", true),
        ("b1", Some("bob"), "$presence/alice/devices/phone", false),
        ("b1", Some("bob"), "$presence/alice/devices/+", false),
        ("b1", Some("bob"), "$presence/alice/watchers", false),
        ("b1", Some("bob"), "$presence/alice/#", false),
        ("b1", Some("bob"), "$presence/alice/requests/bob", true),
        ("b1", Some("bob"), "$presence/alice/requests/carol", false),
        ("b1", Some("bob"), "$presence/alice/requests/+", false),
        ("a1", Some("alice"), "$presence/alice/#", true),
        ("a1", Some("alice"), "$presence/alice/requests/+", true),
        ("a1", Some("alice"), "$presence/alice/devices/+", true),
        ("b1", Some("bob"), "$presence/+", false),
        ("b1", Some("bob"), "$presence/#", false),
        ("b1", Some("bob"), "$presence/+/devices/+", false),
        (
            "b1",
            Some("bob"),
            "$share/g/$presence/alice/watchers",
            false,
        ),
        ("anon", None, "$presence/#", false),
        ("kiosk", None, "$presence/alice/requests/kiosk", true),
        ("admin", None, "$presence/#", true),
        ("site-local", None, "$presence/#", true),
    ];
    for &(client, user, filter, allowed) in rows {
        let w = as_user(client, user);
        assert_eq!(
            a.check(&w, &Request::Subscribe { filter }, &nobody_here)
                .is_ok(),
            allowed,
            "{client} subscribe {filter}"
        );
    }
    // With a password file, a bridge is a configured bridge user, not a client id's spelling.
    let mut cfg = Config::ephemeral();
    cfg.auth.password_file = Some("passwd".into());
    cfg.auth.bridge_users = vec!["site-bridge".into()];
    let a = Access::new(&cfg);
    let all = Request::Subscribe {
        filter: "$presence/#",
    };
    assert!(
        a.check(&as_user("x", Some("site-bridge")), &all, &nobody_here)
            .is_ok()
    );
    assert!(
        a.check(&as_user("site-local", Some("mallory")), &all, &nobody_here)
            .is_err()
    );
}

#[test]
fn with_a_password_file_only_bridge_users_forward_hierarchy_documents() {
    let mut cfg = Config::ephemeral();
    cfg.auth.password_file = Some("passwd".into());
    cfg.auth.bridge_users = vec!["site-bridge".into()];
    let a = Access::new(&cfg);
    let fwd = |topic| Request::Publish {
        topic,
        forwarded: true,
    };
    let bridge = Who {
        client_id: "anything",
        user: Some("site-bridge"),
        bridge: false,
    };
    let forger = Who {
        client_id: "site-local",
        user: Some("mallory"),
        bridge: false,
    };
    assert!(a.check(&bridge, &fwd("$status/far"), &nobody_here).is_ok());
    assert!(a.check(&bridge, &fwd("$config/dev"), &nobody_here).is_ok());
    // A forged hop marker is a loop marker only: the client rules apply.
    assert!(a.check(&forger, &fwd("$status/far"), &nobody_here).is_err());
    assert!(a.check(&forger, &fwd("$config/dev"), &nobody_here).is_err());
    let anonymous = Who {
        client_id: "x",
        user: None,
        bridge: false,
    };
    assert!(
        a.check(&anonymous, &fwd("$status/far"), &nobody_here)
            .is_err()
    );
}

#[test]
fn with_a_password_file_interest_is_read_by_bridge_users_only() {
    let mut cfg = Config::ephemeral();
    cfg.auth.password_file = Some("passwd".into());
    cfg.auth.bridge_users = vec!["site-bridge".into()];
    let a = Access::new(&cfg);
    let sub = Request::Subscribe {
        filter: "$interest/subscriptions",
    };
    let rows = [
        ("site-local", Some("site-bridge"), true),
        ("site-local", Some("mallory"), false),
        ("site-local", None, false),
        ("other", Some("site-bridge"), false),
    ];
    for (client_id, user, allowed) in rows {
        let who = as_user(client_id, user);
        assert_eq!(
            a.check(&who, &sub, &nobody_here).is_ok(),
            allowed,
            "{client_id} as {user:?}"
        );
    }
}

/// A broker with a password file, admin user `root`, bridge user `site-bridge` and an
/// embedded `[[bridge]]` named `site` (local client id `site-local`).
fn guarded() -> Access {
    let mut cfg = Config::ephemeral();
    cfg.auth.password_file = Some("passwd".into());
    cfg.auth.bridge_users = vec!["site-bridge".into()];
    cfg.config_docs.admins = vec!["root".into()];
    cfg.bridge = vec![canopy_metabroker::BridgeConfig::new(
        "site",
        "mqtt://127.0.0.1:1883",
        "mqtt://127.0.0.1:1884",
    )];
    let mut a = Access::new(&cfg);
    a.set_acl(Some(Arc::new(DenyTopic("a/secret"))));
    a
}

#[test]
fn with_a_password_file_admins_are_users_not_client_ids() {
    let a = guarded();
    let write = Request::Publish {
        topic: "$config/dev",
        forwarded: false,
    };
    let read_all = Request::Subscribe {
        filter: "$config/#",
    };
    let rows = [
        ("any", Some("root"), true),
        ("root", None, false),
        ("root", Some("mallory"), false),
    ];
    for (client_id, user, allowed) in rows {
        let w = as_user(client_id, user);
        assert_eq!(
            a.check(&w, &write, &nobody_here).is_ok(),
            allowed,
            "{client_id} {user:?}"
        );
        assert_eq!(
            a.check(&w, &read_all, &nobody_here).is_ok(),
            allowed,
            "{client_id} {user:?}"
        );
    }
    // Without a password file no user name is proved: admins are client ids.
    let open = access(&["root"]);
    assert!(open.check(&who("root"), &write, &nobody_here).is_ok());
}

#[test]
fn an_embedded_bridge_is_known_by_its_in_process_identity_not_its_client_id() {
    let a = guarded();
    let embedded = Who {
        client_id: "site-local",
        user: Some("canopy-bridge:site"),
        bridge: true,
    };
    let impostor = as_user("site-local", None);
    let impostor_user = as_user("site-local", Some("mallory"));
    let state = Request::Publish {
        topic: "$SYS/metabroker/site/state",
        forwarded: false,
    };
    let interest = Request::Subscribe {
        filter: "$interest/subscriptions",
    };
    let presence = Request::Subscribe {
        filter: "$presence/#",
    };
    let forwarded = Request::Publish {
        topic: "$config/dev",
        forwarded: true,
    };
    let secret = Request::Deliver { topic: "a/secret" };
    for req in [&state, &interest, &presence, &forwarded, &secret] {
        assert!(a.check(&embedded, req, &nobody_here).is_ok(), "{req:?}");
        assert!(a.check(&impostor, req, &nobody_here).is_err(), "{req:?}");
        assert!(
            a.check(&impostor_user, req, &nobody_here).is_err(),
            "{req:?}"
        );
    }
    // Its own state only.
    let other = Request::Publish {
        topic: "$SYS/metabroker/other/state",
        forwarded: false,
    };
    assert!(a.check(&embedded, &other, &nobody_here).is_err());
    // A standalone metabroker's `<name>-local` writes its state when it is a bridge user.
    let standalone = as_user("edge-local", Some("site-bridge"));
    let edge_state = Request::Publish {
        topic: "$SYS/metabroker/edge/state",
        forwarded: false,
    };
    assert!(a.check(&standalone, &edge_state, &nobody_here).is_ok());
    assert!(
        a.check(
            &as_user("edge-local", Some("mallory")),
            &edge_state,
            &nobody_here
        )
        .is_err()
    );
    // The flag alone, on a client id that is no embedded bridge's, writes no state.
    let flagged = Who {
        client_id: "edge-local",
        user: None,
        bridge: true,
    };
    assert!(a.check(&flagged, &state, &nobody_here).is_err());
    // A bridge user carries configuration documents down: it reads them all.
    let config_all = Request::Subscribe {
        filter: "$config/#",
    };
    assert!(a.check(&standalone, &config_all, &nobody_here).is_ok());
    assert!(a.check(&impostor_user, &config_all, &nobody_here).is_err());
}
