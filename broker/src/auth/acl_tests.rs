use super::*;

const FILE: &str = "\
# anonymous clients
topic read public/#
topic write public/in

user alice
topic readwrite home/alice/#
topic deny home/alice/secret
topic read $SYS/broker/#

user bob
topic home/bob/#

# patterns apply to everyone
pattern write devices/%c/out
pattern read inbox/%u/#
pattern deny inbox/%u/blocked
";

fn acl() -> Acl {
    Acl::parse(FILE).unwrap()
}

use Access::{Read, Write};

#[test]
fn per_message_matrix_for_user_pattern_and_anonymous_rules() {
    let acl = acl();
    // (user, client id, access, topic, allowed)
    let cases: &[(Option<&str>, &str, Access, &str, bool)] = &[
        // anonymous section
        (None, "c1", Read, "public/news", true),
        (None, "c1", Write, "public/news", false),
        (None, "c1", Write, "public/in", true),
        (None, "c1", Read, "home/alice/x", false),
        // user section: alice
        (Some("alice"), "c1", Read, "home/alice/x", true),
        (Some("alice"), "c1", Write, "home/alice/x/y", true),
        (Some("alice"), "c1", Write, "home/alice", true),
        (Some("alice"), "c1", Read, "home/alice/secret", false),
        (Some("alice"), "c1", Write, "home/alice/secret", false),
        (Some("alice"), "c1", Read, "home/bob/x", false),
        (Some("alice"), "c1", Read, "public/news", false),
        (Some("alice"), "c1", Read, "$SYS/broker/uptime", true),
        (Some("alice"), "c1", Write, "$SYS/broker/uptime", false),
        // no access word: readwrite
        (Some("bob"), "c1", Write, "home/bob/x", true),
        (Some("bob"), "c1", Read, "home/bob/x", true),
        // a user with no section still gets the patterns
        (Some("carol"), "c9", Read, "home/carol", false),
        (Some("carol"), "c9", Write, "devices/c9/out", true),
        (Some("carol"), "c9", Write, "devices/c8/out", false),
        (Some("carol"), "c9", Read, "devices/c9/out", false),
        // %u
        (Some("carol"), "c9", Read, "inbox/carol/1", true),
        (Some("carol"), "c9", Read, "inbox/alice/1", false),
        (Some("carol"), "c9", Read, "inbox/carol/blocked", false),
        // %c applies to anonymous clients; %u never does
        (None, "c7", Write, "devices/c7/out", true),
        (None, "c7", Read, "inbox//1", false),
    ];
    for &(user, id, access, topic, allowed) in cases {
        assert_eq!(
            acl.check(user, id, access, topic),
            allowed,
            "{user:?} {id} {access:?} {topic}"
        );
    }
}

#[test]
fn subscribe_matrix_allows_filters_that_could_match_a_readable_topic() {
    let acl = acl();
    // (user, client id, filter, allowed)
    let cases: &[(Option<&str>, &str, &str, bool)] = &[
        (None, "c1", "public/#", true),
        (None, "c1", "public/+", true),
        (None, "c1", "#", true),
        (None, "c1", "+/news", true),
        (None, "c1", "private/#", false),
        // write-only grant gives no subscription
        (None, "c1", "public/in", true),
        (Some("carol"), "c9", "devices/c9/out", false),
        (Some("alice"), "c1", "home/alice/#", true),
        (Some("alice"), "c1", "home/+/x", true),
        (Some("alice"), "c1", "home/bob/#", false),
        // deny covering the whole filter refuses it; a partial deny does not
        (Some("alice"), "c1", "home/alice/secret", false),
        (Some("alice"), "c1", "home/alice/+", true),
        // `$` topics need a rule that names them
        (Some("alice"), "c1", "$SYS/#", true),
        (Some("alice"), "c1", "$SYS/broker/+", true),
        (Some("bob"), "c1", "$SYS/#", false),
        (Some("bob"), "c1", "#", true),
        // patterns
        (Some("carol"), "c9", "inbox/carol/#", true),
        (Some("carol"), "c9", "inbox/+/#", true),
        (Some("carol"), "c9", "inbox/alice/#", false),
        (Some("carol"), "c9", "inbox/carol/blocked", false),
        // shared subscriptions are judged by their inner filter
        (Some("alice"), "c1", "$share/g/home/alice/#", true),
        (Some("alice"), "c1", "$share/g/home/bob/#", false),
    ];
    for &(user, id, filter, allowed) in cases {
        assert_eq!(
            acl.check_subscribe(user, id, filter),
            allowed,
            "{user:?} {id} {filter}"
        );
    }
}

#[test]
fn dangerous_names_get_nothing_while_patterns_exist() {
    let acl = acl();
    assert!(!acl.check(Some("alice"), "a/b", Read, "home/alice/x"));
    assert!(!acl.check(Some("a+"), "c", Read, "inbox/a+/x"));
    assert!(!acl.check(None, "#", Write, "devices/#/out"));
    assert!(!acl.check_subscribe(Some("x/y"), "c", "inbox/x/y/#"));
    let no_patterns = Acl::parse("user a/b\ntopic t\n").unwrap();
    assert!(no_patterns.check(Some("a/b"), "c/d", Read, "t"));
}

#[test]
fn an_empty_file_grants_nothing() {
    let acl = Acl::parse("# nothing\n\n").unwrap();
    assert!(!acl.check(None, "c", Read, "a"));
    assert!(!acl.check(Some("u"), "c", Write, "a"));
    assert!(!acl.check_subscribe(Some("u"), "c", "#"));
}

#[test]
fn user_sections_accumulate_and_names_may_contain_spaces() {
    let acl = Acl::parse("user a b\ntopic x\nuser c\ntopic y\nuser a b\ntopic z\n").unwrap();
    assert!(acl.check(Some("a b"), "id", Write, "x"));
    assert!(acl.check(Some("a b"), "id", Write, "z"));
    assert!(!acl.check(Some("a b"), "id", Write, "y"));
}

#[test]
fn a_lone_word_after_topic_is_the_filter_and_filters_may_contain_spaces() {
    let acl = Acl::parse("topic read\ntopic write a b/c\n").unwrap();
    assert!(acl.check(None, "c", Write, "read"));
    assert!(acl.check(None, "c", Write, "a b/c"));
    assert!(!acl.check(None, "c", Read, "a b/c"));
}

#[test]
fn parse_errors_name_the_line() {
    let cases = [
        ("topic read a\nuser\n", 2, "needs a user name"),
        ("topic\n", 1, "needs a topic filter"),
        ("\n\ntopic read a/#/b\n", 3, "'#'"),
        ("topic read a+\n", 1, "'+'"),
        ("pattern read a/x%c\n", 1, "whole topic level"),
        ("pattern read a/%u/#/x\n", 1, "'#'"),
        ("# ok\ntopc read a\n", 2, "unknown keyword"),
    ];
    for (text, line, needle) in cases {
        let e = Acl::parse(text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.to_string().contains(needle), "{text:?}: {e}");
    }
}

#[test]
fn windows_line_endings_and_indentation_are_accepted() {
    let acl = Acl::parse("  # c\r\nuser u\r\n\ttopic read a/#\r\n").unwrap();
    assert!(acl.check(Some("u"), "c", Read, "a/b"));
}

#[test]
fn intersects_and_covers_agree_with_the_reference_matcher() {
    let filters = [
        "a", "a/b", "a/+", "a/#", "+", "+/b", "#", "+/+", "a/b/c", "$SYS/#", "$SYS/x", "+/#", "b/#",
    ];
    let topics = [
        "a", "a/b", "a/c", "b", "a/b/c", "x/b", "$SYS/x", "$SYS/y/z", "b/q", "a/b/d",
    ];
    for f in filters {
        for g in filters {
            let both = topics.iter().any(|t| matches(f, t) && matches(g, t));
            if both {
                assert!(intersects(f, g), "{f} ∩ {g}");
            }
            if covers(f, g) {
                for t in topics {
                    assert!(!matches(g, t) || matches(f, t), "{f} ⊇ {g} but {t}");
                }
            }
        }
    }
    assert!(!intersects("a/+", "a"));
    assert!(intersects("a/#", "a"));
    assert!(!intersects("#", "$SYS/x"));
    assert!(covers("a/#", "a"));
    assert!(covers("#", "+/x"));
    assert!(!covers("+/#", "$SYS/x"));
    assert!(!covers("a/+", "a/#"));
}

#[test]
fn pattern_matching_without_allocation_agrees_with_substitution() {
    let acl = Acl::parse(
        "pattern a/%c/#\npattern +/%u\npattern %u/%c\npattern #\npattern $SYS/%c\npattern x/+/%c\n",
    )
    .unwrap();
    let topics = [
        "a/c1/x", "a/c1", "q/u1", "u1/c1", "$SYS/c1", "x/y/c1", "x/y/c2", "a", "$SYS/q",
    ];
    for p in &acl.patterns {
        for user in [None, Some("u1"), Some("u2")] {
            for id in ["c1", "c2"] {
                for t in topics {
                    let oracle = p.substitute(user, id).is_some_and(|f| matches(&f, t));
                    assert_eq!(p.matches(user, id, t), oracle, "{p:?} {user:?} {id} {t}");
                }
            }
        }
    }
}

/// Review comments (docs/review-comments.md): `%u` in a middle level, after a `+`, keeps each
/// reviewer to the comments directed to them, on every document.
#[test]
fn user_pattern_in_a_middle_level_keeps_each_reviewer_to_their_own_comments() {
    let acl = Acl::parse(
        "user author\ntopic readwrite review/#\n\npattern read review/+/comments/%u/#\n",
    )
    .unwrap();
    let bob = Some("bob");
    let delivery: &[(Option<&str>, Access, &str, bool)] = &[
        (bob, Read, "review/spec/comments/bob/c1", true),
        (bob, Read, "review/plan/comments/bob/c9", true),
        (bob, Read, "review/spec/comments/bob", true),
        (bob, Read, "review/spec/comments/alice/c1", false),
        (bob, Read, "review/spec/notes/bob/c1", false),
        (bob, Write, "review/spec/comments/bob/c1", false),
        (Some("author"), Write, "review/spec/comments/bob/c1", true),
        (Some("author"), Read, "review/spec/comments/alice/c1", true),
        (None, Read, "review/spec/comments/bob/c1", false),
    ];
    for &(user, access, topic, allowed) in delivery {
        assert_eq!(
            acl.check(user, "c", access, topic),
            allowed,
            "{user:?} {access:?} {topic}"
        );
    }
    let subscribe: &[(&str, bool)] = &[
        ("review/spec/comments/bob/#", true),
        ("review/+/comments/bob/#", true),
        // a wider filter is accepted; delivery still gives bob only his own comments
        ("review/spec/comments/#", true),
        ("review/spec/comments/alice/#", false),
        ("review/+/comments/alice/+", false),
        ("other/#", false),
    ];
    for &(filter, allowed) in subscribe {
        assert_eq!(acl.check_subscribe(bob, "c", filter), allowed, "{filter}");
    }
}

/// `$status` reads are an ACL decision (docs/security.md): without an ACL file everyone
/// reads them; with one, only a rule naming `$status` grants them — `#` does not, as a
/// wildcard first level never matches a `$` topic [MQTT-4.7.2-1].
#[test]
fn status_documents_are_read_only_under_a_rule_that_names_status() {
    let acl =
        Acl::parse("topic read #\n\nuser ops\ntopic read $status/#\n\npattern read $status/%c\n")
            .unwrap();
    let cases: &[(Option<&str>, &str, &str, bool)] = &[
        (None, "dev1", "$status/dev2", false),
        (None, "dev1", "$status/dev1", true),
        (None, "dev1", "other/topic", true),
        (Some("ops"), "console", "$status/dev2", true),
    ];
    for &(user, id, topic, allowed) in cases {
        assert_eq!(
            acl.check(user, id, Read, topic),
            allowed,
            "{user:?} {id} {topic}"
        );
    }
    // `$status/#` is granted because its own document could match; every delivery is then
    // checked one by one, so it receives only `$status/dev1`.
    assert!(acl.check_subscribe(None, "dev1", "$status/#"));
    assert!(!acl.check_subscribe(None, "dev1", "$status/dev2"));
    assert!(acl.check_subscribe(Some("ops"), "console", "$status/#"));
}
