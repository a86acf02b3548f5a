use bytes::Bytes;

use super::super::OFFLINE_STATUS_EXPIRY;
use super::*;

fn doc(state: State, reason: &str) -> StatusDoc {
    StatusDoc::now(state, "n", reason)
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

/// The topics `filter` matches among the kept documents at `now`, sorted.
fn kept(b: &StatusBook, now: Instant, f: &str) -> Vec<String> {
    let mut out = Vec::new();
    b.for_each_match(now, &filter(f), &mut |t, m| {
        assert_eq!(t, &m.topic);
        out.push(t.to_string());
    });
    out.sort();
    out
}

#[test]
fn book_returns_the_latest_document() {
    let b = StatusBook::new();
    b.set("dev1", doc(State::Online, "connected"));
    b.set("dev1", doc(State::Offline, "connection lost"));
    assert_eq!(b.get("dev1").map(|d| d.state), Some(State::Offline));
    assert_eq!(
        b.get("dev1").map(|d| d.reason),
        Some("connection lost".into())
    );
    assert_eq!(
        b.get_ignore_case("DEV1").map(|d| d.state),
        Some(State::Offline)
    );
    assert!(b.get("dev2").is_none());
}

#[test]
fn book_keeps_a_shared_id_and_one_copy_of_each_node_and_reason() {
    let b = StatusBook::new();
    let id: Arc<str> = Arc::from("dev1");
    b.record(&id, &doc(State::Online, "connected"), Origin::Local, None);
    b.set("dev2", doc(State::Online, "connected"));
    let inner = b.read();
    let (key, one) = inner.docs.get_key_value("dev1").unwrap();
    assert!(Arc::ptr_eq(key, &id));
    let two = &inner.docs["dev2"];
    assert_eq!(
        (one.node, one.tag & INDEX_MASK),
        (two.node, two.tag & INDEX_MASK)
    );
    assert_eq!(inner.strings.list.len(), 3, "\"\", \"connected\", \"n\"");
    drop(inner);
    assert_eq!(b.get("dev2").map(|d| d.reason), Some("connected".into()));
}

#[test]
fn an_entry_stays_sixteen_bytes() {
    assert_eq!(std::mem::size_of::<Entry>(), 16);
}

#[test]
fn local_documents_render_as_the_retained_messages_published() {
    let b = StatusBook::new();
    let now = Instant::now();
    let d = doc(State::Offline, "keepalive timeout");
    let expires = now + Duration::from_secs(u64::from(OFFLINE_STATUS_EXPIRY));
    b.record(&Arc::from("dev"), &d, Origin::Local, Some(expires));
    let m = KeptDocs::get(&b, now, &TopicName::new("$status/dev").unwrap()).expect("kept");
    assert!(m.retain);
    assert_eq!(m.payload, Bytes::from(d.to_json()));
    assert_eq!(
        m.properties.message_expiry_interval,
        Some(OFFLINE_STATUS_EXPIRY)
    );
    let at = m.expires_at.unwrap();
    assert!(
        at <= expires && at + Duration::from_secs(1) > expires,
        "{at:?}"
    );
    assert_eq!(m.remaining_expiry(now), Some(OFFLINE_STATUS_EXPIRY));
    assert_eq!(b.count(), 1);
}

#[test]
fn kept_documents_are_matched_by_filters_and_learnt_ones_are_not_kept() {
    let b = StatusBook::new();
    let now = Instant::now();
    for id in ["a", "b", "site/c"] {
        b.record(
            &Arc::from(id),
            &doc(State::Online, "connected"),
            Origin::Local,
            None,
        );
    }
    b.record(
        &Arc::from("far"),
        &doc(State::Online, "connected"),
        Origin::Learnt,
        None,
    );
    assert_eq!(
        kept(&b, now, "$status/#"),
        ["$status/a", "$status/b", "$status/site/c"]
    );
    assert_eq!(kept(&b, now, "$status/+"), ["$status/a", "$status/b"]);
    assert_eq!(kept(&b, now, "$status/site/+"), ["$status/site/c"]);
    assert_eq!(kept(&b, now, "$status/b"), ["$status/b"]);
    assert!(kept(&b, now, "$status/far").is_empty());
    // [MQTT-4.7.2-1]: a filter starting with a wildcard matches no `$` topic.
    assert!(kept(&b, now, "#").is_empty());
    assert!(kept(&b, now, "+/a").is_empty());
    assert_eq!(b.count(), 3);
    assert!(
        b.get("far").is_some(),
        "learnt documents still answer lookups"
    );
}

#[test]
fn expired_documents_are_not_read_and_are_swept() {
    let b = StatusBook::new();
    let now = Instant::now();
    let soon = now + Duration::from_secs(10);
    b.record(
        &Arc::from("gone"),
        &doc(State::Offline, "x"),
        Origin::Local,
        Some(soon),
    );
    b.record(
        &Arc::from("far"),
        &doc(State::Offline, "x"),
        Origin::Learnt,
        Some(soon),
    );
    b.record(
        &Arc::from("here"),
        &doc(State::Online, "connected"),
        Origin::Local,
        None,
    );
    let later = soon + Duration::from_secs(2);
    assert_eq!(kept(&b, later, "$status/#"), ["$status/here"]);
    assert!(KeptDocs::get(&b, later, &TopicName::new("$status/gone").unwrap()).is_none());
    assert_eq!(b.sweep(now), Vec::<Arc<str>>::new());
    let swept = b.sweep(later);
    assert_eq!(
        swept,
        vec![Arc::<str>::from("gone")],
        "only local ids are returned"
    );
    assert!(b.get("gone").is_none() && b.get("far").is_none());
    assert_eq!(b.count(), 1);
}

#[test]
fn replacing_or_removing_a_local_document_keeps_the_count() {
    let b = StatusBook::new();
    let id: Arc<str> = Arc::from("x");
    b.record(&id, &doc(State::Online, "connected"), Origin::Local, None);
    b.record(
        &id,
        &doc(State::Offline, "disconnected"),
        Origin::Local,
        None,
    );
    assert_eq!(b.count(), 1);
    b.record(&id, &doc(State::Online, "connected"), Origin::Learnt, None);
    assert_eq!(b.count(), 0, "a forwarded document replaces the kept one");
    b.record(&id, &doc(State::Online, "connected"), Origin::Local, None);
    b.remove("x");
    assert_eq!(b.count(), 0);
    assert!(b.get("x").is_none());
}

#[test]
fn a_full_string_table_reads_new_strings_as_empty() {
    let b = StatusBook::new();
    for i in 0..MAX_STRINGS + 10 {
        b.set(
            &format!("c{i}"),
            StatusDoc::now(State::Online, "n", &format!("r{i}")),
        );
    }
    assert_eq!(b.read().strings.list.len(), MAX_STRINGS);
    let last = b.get(&format!("c{}", MAX_STRINGS + 9)).unwrap();
    assert_eq!((last.reason.as_str(), last.node.as_str()), ("", "n"));
    assert_eq!(b.get("c5").map(|d| d.reason), Some("r5".into()));
}

#[test]
fn a_document_that_was_not_retained_is_learnt_but_takes_no_kept_ones_place() {
    let b = StatusBook::new();
    let (near, far): (Arc<str>, Arc<str>) = (Arc::from("near"), Arc::from("far"));
    b.record(&near, &doc(State::Online, "connected"), Origin::Local, None);
    let forwarded = StatusDoc::now(State::Offline, "site", "connection lost");
    b.learn(&near, &forwarded, None);
    b.learn(&far, &forwarded, None);
    assert_eq!(b.get("near").map(|d| d.node), Some("n".into()));
    assert_eq!(b.get("far").map(|d| d.node), Some("site".into()));
    assert_eq!(b.count(), 1);
}
