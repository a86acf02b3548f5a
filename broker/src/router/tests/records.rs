//! Subscriptions in the journal: one small row per changed subscription, coalesced per
//! (client id, filter) within a batch, bounded while a commit is in flight, and a
//! restart from the store that brings back options, identifiers and activation states.

use std::collections::BTreeMap;
use std::time::Duration;

use canopy_proto::{PublishProperties, QoS, RetainHandling, SubscriptionOptions};

use super::{Commits, Conn, Harness};
use crate::store::{ActivationRecord, MemoryStore, Mutation, Store};

fn persistent() -> Conn {
    Conn {
        clean: false,
        expiry: 3600,
        ..Conn::default()
    }
}

/// Takes the mutations submitted so far.
fn take_ops(commits: &Commits) -> Vec<Mutation> {
    std::mem::take(&mut *commits.ops.lock().unwrap())
}

/// What a session's subscriptions look like to the store, by filter.
type Subs = BTreeMap<String, (SubscriptionOptions, Option<u32>, Option<ActivationRecord>)>;

fn subscriptions_of(h: &Harness, id: &str) -> Subs {
    let key = h.router.by_id[id];
    h.router.sessions[key]
        .subscriptions
        .iter()
        .map(|(f, e)| {
            (
                f.to_string(),
                (
                    e.options,
                    e.identifier,
                    e.activation.as_ref().map(|a| a.record()),
                ),
            )
        })
        .collect()
}

#[test]
fn n_subscribes_in_one_turn_journal_n_small_rows_not_n_copies_of_the_list() {
    let (mut h, commits) = Harness::sync(|_| {});
    h.connect("s", persistent());
    h.complete_commits(&commits);
    take_ops(&commits);
    let filters: Vec<String> = (0..500).map(|i| format!("f/{i}")).collect();
    h.subscribe_burst("s", &filters);
    h.complete_commits(&commits);
    let ops = take_ops(&commits);
    assert_eq!(ops.len(), 500, "one row per SUBSCRIBE");
    let mut written: Vec<String> = ops
        .iter()
        .map(|m| match m {
            Mutation::PutSubscription(id, sub) => {
                assert_eq!(&**id, "s");
                sub.filter.clone()
            }
            other => panic!("only subscription rows expected, got {other:?}"),
        })
        .collect();
    written.sort();
    let mut expected = filters.clone();
    expected.sort();
    assert_eq!(written, expected);
    assert_eq!(h.packets("s").len(), 500, "every SUBACK");
}

#[test]
fn a_new_persistent_session_is_stored_once_with_its_subscriptions() {
    let (mut h, commits) = Harness::sync(|_| {});
    h.connect("s", persistent());
    h.subscribe("s", "a", QoS::AtLeastOnce);
    h.complete_commits(&commits);
    let ops = take_ops(&commits);
    let records = ops
        .iter()
        .filter(|m| matches!(m, Mutation::PutSession(_)))
        .count();
    assert_eq!(records, 1, "{ops:?}");
}

#[test]
fn subscribe_then_unsubscribe_before_a_commit_is_one_delete() {
    let (mut h, commits) = Harness::sync(|_| {});
    h.connect("s", persistent());
    h.subscribe("s", "keep", QoS::AtMostOnce);
    h.complete_commits(&commits);
    take_ops(&commits);
    let a = vec!["a/b".to_string()];
    h.subscribe_burst("s", &a);
    h.complete_commits(&commits);
    take_ops(&commits);
    // One turn: unsubscribe, subscribe again, unsubscribe again.
    let (session, conn) = h.target("s");
    for sub in [false, true, false] {
        let pkid = h.pkid();
        let cmd = if sub {
            super::Command::Subscribe {
                session,
                conn,
                subscribe: canopy_proto::Subscribe {
                    pkid,
                    filters: vec![(
                        canopy_proto::TopicFilter::new("a/b").unwrap(),
                        SubscriptionOptions::default(),
                    )],
                    properties: Default::default(),
                },
            }
        } else {
            super::Command::Unsubscribe {
                session,
                conn,
                unsubscribe: canopy_proto::Unsubscribe {
                    pkid,
                    filters: vec![canopy_proto::TopicFilter::new("a/b").unwrap()],
                    user_properties: Vec::new(),
                },
            }
        };
        h.router.handle(h.now, cmd);
    }
    h.router.end_turn();
    h.complete_commits(&commits);
    let ops = take_ops(&commits);
    assert!(
        matches!(ops.as_slice(), [Mutation::DeleteSubscription(id, f)] if &**id == "s" && &**f == "a/b"),
        "{ops:?}"
    );
}

#[test]
fn while_a_commit_is_in_flight_at_most_one_record_per_changed_filter_waits() {
    let (mut h, commits) = Harness::sync(|_| {});
    h.connect("s", persistent());
    h.complete_commits(&commits);
    // Batch 1 goes out and stays in flight.
    h.subscribe("s", "first", QoS::AtMostOnce);
    take_ops(&commits);
    let x = vec!["x".to_string()];
    let y = vec!["y".to_string()];
    for _ in 0..1000 {
        h.subscribe_burst("s", &x);
        h.subscribe_burst("s", &y);
        h.unsubscribe_burst("s", &y);
    }
    assert!(take_ops(&commits).is_empty(), "nothing submitted in flight");
    assert!(
        h.router.journal.ops.is_empty(),
        "nothing piles up in the journal"
    );
    assert_eq!(h.router.dirty_sessions.len(), 1);
    let key = h.router.by_id["s"];
    assert_eq!(
        h.router.sessions[key]
            .dirty_filters()
            .map_or(0, |f| f.len()),
        2
    );
    h.complete_commits(&commits);
    let ops = take_ops(&commits);
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert!(
        ops.iter()
            .any(|m| matches!(m, Mutation::PutSubscription(_, s) if s.filter == "x"))
    );
    assert!(
        ops.iter()
            .any(|m| matches!(m, Mutation::DeleteSubscription(_, f) if &**f == "y"))
    );
}

#[test]
fn a_restart_from_the_store_brings_back_subscriptions_options_and_activation_states() {
    let (mut h, commits) = Harness::sync(|_| {});
    h.connect("s", persistent());
    h.connect("p", Conn::default());
    h.complete_commits(&commits);
    let opts = |qos, no_local, rap, rh| SubscriptionOptions {
        qos,
        no_local,
        retain_as_published: rap,
        retain_handling: rh,
    };
    h.subscribe_each(
        "s",
        &[
            (
                "a/+/c".into(),
                opts(QoS::AtLeastOnce, true, true, RetainHandling::DoNotSend),
                Some(268_435_455),
            ),
            (
                "$share/g/#".into(),
                opts(QoS::ExactlyOnce, false, false, RetainHandling::SendIfNew),
                None,
            ),
            (
                "gone".into(),
                opts(
                    QoS::AtMostOnce,
                    false,
                    false,
                    RetainHandling::SendAtSubscribe,
                ),
                Some(7),
            ),
        ],
    );
    h.complete_commits(&commits);
    // Changed options for an existing filter, and a removed one.
    h.subscribe_each(
        "s",
        &[(
            "a/+/c".into(),
            opts(QoS::ExactlyOnce, false, true, RetainHandling::SendIfNew),
            Some(3),
        )],
    );
    h.unsubscribe_burst("s", &["gone".to_string()]);
    // Two event-activated subscriptions; one is switched on, one stays off.
    for (filter, on) in [("ev/1", "on/1"), ("ev/2", "on/2")] {
        let reg = format!(
            r#"{{"filter":"{filter}","qos":1,"activate_on":"{on}","deactivate_on":"off/{filter}","initial":"inactive"}}"#
        );
        h.publish(
            "s",
            "$ctl/subscribe",
            &reg,
            QoS::AtMostOnce,
            false,
            PublishProperties::default(),
        );
    }
    h.complete_commits(&commits);
    h.publish(
        "p",
        "on/1",
        "",
        QoS::AtMostOnce,
        false,
        PublishProperties::default(),
    );
    h.complete_commits(&commits);
    let before = subscriptions_of(&h, "s");
    assert_eq!(before.len(), 4, "{before:?}");
    assert_eq!(
        before["ev/1"].2.as_ref().map(|a| a.active),
        Some(true),
        "switched on"
    );
    assert_eq!(before["ev/2"].2.as_ref().map(|a| a.active), Some(false));

    let mut store = MemoryStore::new();
    store.commit(&mut take_ops(&commits)).unwrap();
    let snapshot = store.load().unwrap();
    let (h2, _) = Harness::sync_from(snapshot, |_| {});
    assert_eq!(subscriptions_of(&h2, "s"), before);
    assert_eq!(h2.router.subscription_count, 4);
}

#[test]
fn a_session_with_many_subscriptions_ends_at_once_and_leaves_the_index_in_chunks() {
    let (mut h, commits) = Harness::sync(|_| {});
    assert!(!h.connect(
        "big",
        Conn {
            clean: false,
            expiry: 3600,
            ..Conn::default()
        }
    ));
    h.connect("other", Conn::default());
    let n = super::super::ending::LARGE * 2 + 10;
    let filters: Vec<String> = (0..n).map(|i| format!("big/{i}")).collect();
    h.subscribe_burst("big", &filters);
    h.subscribe("other", "big/5", QoS::AtMostOnce);
    h.complete_commits(&commits);
    assert_eq!(h.router.subscription_count, n + 1);

    // Ended for good (clean start takes it over): gone at once for everything visible.
    h.disconnect("big", false, "disconnected");
    assert!(!h.connect(
        "big",
        Conn {
            clean: true,
            ..Conn::default()
        }
    ));
    h.publish(
        "other",
        "big/5",
        "x",
        QoS::AtMostOnce,
        false,
        PublishProperties::default(),
    );
    assert_eq!(h.received("big").len(), 0, "nothing for the ended session");
    assert_eq!(h.received("other").len(), 1);
    // Its subscriptions leave the index over several turns, a chunk each.
    let left = h.router.subscription_count;
    assert!(
        left > n - super::super::ending::CHUNK,
        "{left}: not all in one turn"
    );
    h.advance(Duration::ZERO);
    assert_eq!(
        h.router.subscription_count, 1,
        "only other's subscription is left"
    );
    h.publish(
        "other",
        "big/7",
        "y",
        QoS::AtMostOnce,
        false,
        PublishProperties::default(),
    );
    assert_eq!(
        h.received("big").len(),
        0,
        "the new session never subscribed"
    );
    // The store forgot it with one DeleteSession, and nothing of it was written after.
    h.complete_commits(&commits);
    let mut store = MemoryStore::new();
    store.commit(&mut take_ops(&commits)).unwrap();
    let (h2, _) = Harness::sync_from(store.load().unwrap(), |_| {});
    assert_eq!(h2.router.subscription_count, 0);
}

#[test]
fn under_sync_a_subscription_backlog_beyond_its_bound_makes_subacks_wait_for_their_commit() {
    let (mut h, commits) = Harness::sync(|_| {});
    assert!(!h.connect(
        "s",
        Conn {
            clean: false,
            expiry: 3600,
            ..Conn::default()
        }
    ));
    let first: Vec<String> = (0..10).map(|i| format!("a/{i}")).collect();
    h.subscribe_burst("s", &first);
    assert_eq!(h.packets("s").len(), 10, "below the bound: at once");
    // The session's first record commits, which submits these ten: a commit is in
    // flight, and twice the bound in changes arrive meanwhile.
    h.complete_commits_once(&commits);
    let n = super::super::records::BACKLOG * 2;
    let more: Vec<String> = (0..n).map(|i| format!("b/{i}")).collect();
    h.subscribe_burst("s", &more);
    let at_once = h.packets("s").len();
    assert_eq!(
        at_once,
        super::super::records::BACKLOG,
        "the rest waits for the journal"
    );
    h.complete_commits(&commits);
    assert_eq!(
        h.packets("s").len(),
        n - at_once,
        "released by the commit of their changes"
    );
}

/// The `$status` topics in `store`, sorted.
fn stored_status(store: &mut MemoryStore) -> Vec<String> {
    let mut topics: Vec<String> = store
        .load()
        .unwrap()
        .retained
        .iter()
        .map(|m| m.topic.to_string())
        .filter(|t| t.starts_with("$status/"))
        .collect();
    topics.sort();
    topics
}

#[test]
fn status_documents_are_stored_but_not_held_as_retained_messages_and_survive_a_restart() {
    let (mut h, commits) = Harness::sync(|_| {});
    h.connect("dev", Conn::default());
    h.connect("gone", Conn::default());
    h.disconnect("gone", false, "disconnected");
    let in_trie = |h: &Harness| {
        h.router
            .retained
            .iter()
            .filter(|(t, _)| t.starts_with("$status/"))
            .count()
    };
    let others = h.router.retained.len();
    assert_eq!(in_trie(&h), 0, "the retained trie holds none");
    assert_eq!(
        h.router.stats().retained,
        others + 2,
        "but they count as retained"
    );
    h.connect("w", Conn::default());
    h.subscribe("w", "$status/+", QoS::AtMostOnce);
    let mut got: Vec<(String, bool)> = h
        .received("w")
        .into_iter()
        .map(|g| (g.topic, g.retain))
        .collect();
    got.sort();
    let want = [
        ("$status/dev", true),
        ("$status/gone", true),
        ("$status/w", true),
    ];
    assert_eq!(got, want.map(|(t, r)| (t.to_string(), r)));

    h.complete_commits(&commits);
    let mut store = MemoryStore::new();
    store.commit(&mut take_ops(&commits)).unwrap();
    assert_eq!(
        stored_status(&mut store),
        ["$status/dev", "$status/gone", "$status/w"]
    );

    // A hard stop: `dev` and `w` were online. After the restart every document is
    // offline, kept in the book again, and read as retained.
    let (mut h2, commits2) = Harness::sync_from(store.load().unwrap(), |_| {});
    assert_eq!(in_trie(&h2), 0, "restored ones are taken out of the trie");
    assert_eq!(
        h2.status.get("dev").map(|d| d.reason),
        Some("broker restart".into())
    );
    assert_eq!(
        h2.status.get("gone").map(|d| d.reason),
        Some("disconnected".into())
    );
    h2.connect("w2", Conn::default());
    h2.subscribe("w2", "$status/#", QoS::AtMostOnce);
    let got = h2.received("w2");
    assert_eq!(got.len(), 4, "dev, gone, w and w2");
    for g in &got {
        let text = std::str::from_utf8(&g.payload).unwrap();
        assert_eq!(text.contains("online"), g.topic == "$status/w2", "{g:?}");
    }

    // A day later the offline documents expire: out of the book and out of the store.
    h2.complete_commits(&commits2);
    store.commit(&mut take_ops(&commits2)).unwrap();
    h2.advance(Duration::from_secs(86_400 + 61));
    h2.complete_commits(&commits2);
    store.commit(&mut take_ops(&commits2)).unwrap();
    assert_eq!(stored_status(&mut store), ["$status/w2"]);
    assert!(h2.status.get("gone").is_none());
    assert_eq!(h2.router.stats().retained, h2.router.retained.len() + 1);
}
