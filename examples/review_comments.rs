//! Review comments (the collaborative-editing seed, docs/review-comments.md): an author
//! selects four portions of a document and writes one comment per portion, each directed to
//! one or more of three reviewers. Each comment is a retained JSON message on
//! `review/<doc>/comments/<reviewer>/<comment-id>`, and one ACL line,
//! `pattern read review/+/comments/%u/#`, keeps every reviewer to their own list.
//!
//! What to watch in the output:
//! - alice and bob (each a client with its own login) print the comments directed to them
//!   as the author sends them;
//! - bob asks for alice's list: the broker refuses the subscription and he gets nothing;
//!   asking for every list (`review/design/comments/#`) he still gets only his own;
//! - the author withdraws one comment (an empty retained message): alice sees it go;
//! - carol connects only at the end and still gets her whole list (retained messages);
//! - the last lines are each reviewer's final list.
//!
//! The broker runs in this process with a generated password file and ACL file in a
//! temporary directory, on a loopback port, and stops by itself (at most 30 s).
//!
//! Run: `cargo run -p canopy-examples --example review_comments`.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use canopy_broker::config::Config;
use rumqttc::QoS;
use serde_json::{Value, json};
use support::{BoxError, Clock, Peer, Seen};

const DOC: &str = "design";
const TEXT: &str = "Canopy keeps every session in one task. Messages are routed by a trie. \
Retained messages live in a store that survives restarts. Bridges forward by topic.";
const REVIEWERS: [&str; 3] = ["alice", "bob", "carol"];

/// The author's comments: (id, quoted portion, comment, reviewers it is directed to).
const COMMENTS: [(&str, &str, &str, &[&str]); 4] = [
    ("c1", "one task", "Which task owns the outbox?", &["alice"]),
    (
        "c2",
        "routed by a trie",
        "Say which trie: the subscription trie.",
        &["bob", "carol"],
    ),
    (
        "c3",
        "survives restarts",
        "Only with durability = fsync?",
        &["carol"],
    ),
    (
        "c4",
        "forward by topic",
        "Link to docs/metabroker.md.",
        &["alice", "bob"],
    ),
];

fn password(user: &str) -> String {
    format!("{user}-example-password")
}

/// The comment document of `id` as published to each of its reviewers.
fn comment(id: &str, quoted: &str, text: &str) -> Result<Value, BoxError> {
    let start = TEXT
        .find(quoted)
        .ok_or(format!("{id}: {quoted:?} not in the text"))?;
    let time = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    Ok(json!({
        "selection": {"start": start, "end": start + quoted.len(), "quoted": quoted},
        "text": text,
        "author": "author",
        "time": time,
    }))
}

/// A reviewer's view of their list: comment id -> comment text, from what arrived.
fn apply(list: &mut BTreeMap<String, String>, who: &str, clock: Clock, seen: Vec<Seen>) {
    for s in seen {
        let Seen::Message {
            topic,
            payload,
            retain,
        } = s
        else {
            continue;
        };
        let id = topic.rsplit('/').next().unwrap_or_default().to_owned();
        let owner = topic.split('/').nth(3).unwrap_or_default();
        let how = if retain { "stored" } else { "live" };
        if payload.is_empty() {
            clock.say(
                who,
                format!("{id} withdrawn ({topic}, empty retained message)"),
            );
            list.remove(&id);
            continue;
        }
        let doc: Value = serde_json::from_slice(&payload).unwrap_or_default();
        clock.say(
            who,
            format!(
                "{id} [{how}, {owner}'s list] on {:?}: {}",
                doc["selection"]["quoted"].as_str().unwrap_or("?"),
                doc["text"].as_str().unwrap_or("?")
            ),
        );
        list.insert(id, doc["text"].as_str().unwrap_or_default().to_owned());
    }
}

fn names(list: &BTreeMap<String, String>) -> String {
    list.keys().cloned().collect::<Vec<_>>().join(", ")
}

async fn run(addr: std::net::SocketAddr, clock: Clock) -> Result<(), BoxError> {
    let mut lists: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();

    // alice and bob are online while the author writes.
    let mut alice =
        Peer::connect("alice-laptop", addr, Some(("alice", &password("alice")))).await?;
    let mut bob = Peer::connect("bob-desktop", addr, Some(("bob", &password("bob")))).await?;
    for (who, peer) in [("alice", &mut alice), ("bob", &mut bob)] {
        let filter = format!("review/{DOC}/comments/{who}/#");
        let (granted, _) = peer.subscribe(&filter).await?;
        clock.say(who, format!("subscribes to {filter}: granted = {granted}"));
    }

    let author =
        Peer::connect("author-editor", addr, Some(("author", &password("author")))).await?;
    for (id, quoted, text, to) in COMMENTS {
        let doc = comment(id, quoted, text)?.to_string();
        for reviewer in to {
            let topic = format!("review/{DOC}/comments/{reviewer}/{id}");
            author
                .client
                .publish(&topic, QoS::AtLeastOnce, true, doc.clone())
                .await?;
        }
        clock.say("author", format!("{id} on {quoted:?} -> {}", to.join(", ")));
    }
    let quiet = Duration::from_millis(500);
    for (who, peer) in [("alice", &mut alice), ("bob", &mut bob)] {
        let seen = peer.expect(2).await;
        apply(lists.entry(who).or_default(), who, clock, seen);
    }

    // bob tries to read alice's list, then every list.
    let other = format!("review/{DOC}/comments/alice/#");
    let (granted, early) = bob.subscribe(&other).await?;
    let got = early.len() + bob.drain(quiet).await.len();
    clock.say(
        "bob",
        format!("subscribes to {other}: granted = {granted}, received {got} messages"),
    );
    if granted || got != 0 {
        return Err("bob could read alice's list".into());
    }
    let all = format!("review/{DOC}/comments/#");
    let (granted, early) = bob.subscribe(&all).await?;
    let mut seen = early;
    seen.extend(bob.expect(2usize.saturating_sub(seen.len())).await);
    let foreign: Vec<&String> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Message { topic, .. } if !topic.contains("/bob/") => Some(topic),
            _ => None,
        })
        .collect();
    clock.say(
        "bob",
        format!(
            "subscribes to {all}: granted = {granted}, received {} messages, {} of them not his",
            seen.len(),
            foreign.len()
        ),
    );
    if !foreign.is_empty() {
        return Err(format!("bob received {foreign:?}").into());
    }

    // The author withdraws c4 for alice.
    let withdrawn = format!("review/{DOC}/comments/alice/c4");
    author
        .client
        .publish(&withdrawn, QoS::AtLeastOnce, true, Vec::<u8>::new())
        .await?;
    clock.say(
        "author",
        format!("withdraws c4 for alice: empty retained message on {withdrawn}"),
    );
    let seen = alice.expect(1).await;
    apply(lists.entry("alice").or_default(), "alice", clock, seen);

    // carol connects only now.
    let mut carol = Peer::connect("carol-phone", addr, Some(("carol", &password("carol")))).await?;
    let filter = format!("review/{DOC}/comments/carol/#");
    let (granted, mut seen) = carol.subscribe(&filter).await?;
    clock.say(
        "carol",
        format!("connects late, subscribes to {filter}: granted = {granted}"),
    );
    seen.extend(carol.expect(2usize.saturating_sub(seen.len())).await);
    apply(lists.entry("carol").or_default(), "carol", clock, seen);

    println!();
    let want = [("alice", "c1"), ("bob", "c2, c4"), ("carol", "c2, c3")];
    for (who, expected) in want {
        let got = names(lists.get(who).ok_or("no list")?);
        clock.say(who, format!("final list: {got}"));
        if got != expected {
            return Err(format!("{who}: expected {expected}, got {got}").into());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut cfg = Config::ephemeral();
    std::fs::create_dir_all(&cfg.data_dir)?;
    let mut passwd = String::new();
    for user in REVIEWERS.iter().chain(&["author"]) {
        let hash = canopy_model::password::hash_password(password(user).as_bytes())?;
        passwd.push_str(&format!("{user}:{hash}\n"));
    }
    let acl = "user author\ntopic readwrite review/#\n\npattern read review/+/comments/%u/#\n";
    let passwd_file = cfg.data_dir.join("passwd");
    let acl_file = cfg.data_dir.join("acl");
    std::fs::write(&passwd_file, passwd)?;
    std::fs::write(&acl_file, acl)?;
    println!(
        "password file {}, ACL file {}:",
        passwd_file.display(),
        acl_file.display()
    );
    for line in acl.lines() {
        println!("    {line}");
    }
    println!();
    cfg.auth.allow_anonymous = Some(false);
    cfg.auth.password_file = Some(passwd_file);
    cfg.auth.acl_file = Some(acl_file);
    let data_dir = cfg.data_dir.clone();
    let broker = canopy_broker::start(cfg).await?;
    let addr = broker.mqtt_addr();
    let result = tokio::time::timeout(Duration::from_secs(30), run(addr, Clock::start())).await;
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(data_dir);
    result.map_err(|_| "the example did not finish within 30 s")??;
    Ok(())
}
