//! The aggregation order as a table (docs/presence.md), and the documents' wire forms.

use super::*;
use Activity::*;
use Availability::*;

fn devices(list: &[(Availability, Activity, Option<&str>)]) -> BTreeMap<String, DeviceEntry> {
    list.iter()
        .enumerate()
        .map(|(i, &(availability, activity, note))| {
            (
                format!("d{i}"),
                DeviceEntry {
                    availability,
                    activity,
                    note: note.map(str::to_owned),
                    since: 0,
                },
            )
        })
        .collect()
}

#[test]
fn aggregation_table_most_available_and_most_active_win() {
    type Row = (
        &'static [(Availability, Activity, Option<&'static str>)],
        Availability,
        Activity,
        Option<&'static str>,
    );
    let rows: &[Row] = &[
        (&[], Offline, Away, None),
        (&[(Available, Idle, None)], Available, Idle, None),
        (
            &[(Busy, Active, None), (Available, Away, None)],
            Available,
            Active,
            None,
        ),
        (
            &[(Busy, Idle, None), (DoNotDisturb, Active, None)],
            Busy,
            Active,
            None,
        ),
        (
            &[(DoNotDisturb, Away, None), (Offline, Active, None)],
            DoNotDisturb,
            Away,
            None,
        ),
        // An offline device's activity does not count.
        (
            &[(Offline, Active, None), (Busy, Idle, None)],
            Busy,
            Idle,
            None,
        ),
        (
            &[(Offline, Active, None), (Offline, Idle, None)],
            Offline,
            Away,
            None,
        ),
        // The note is the one of a device with the winning availability.
        (
            &[
                (Busy, Active, Some("call")),
                (Available, Idle, Some("desk")),
            ],
            Available,
            Active,
            Some("desk"),
        ),
        (
            &[(Busy, Active, Some("call")), (Busy, Idle, None)],
            Busy,
            Active,
            Some("call"),
        ),
        (
            &[(Available, Active, None), (Busy, Idle, Some("call"))],
            Available,
            Active,
            None,
        ),
    ];
    for (i, &(list, availability, activity, note)) in rows.iter().enumerate() {
        let a = aggregate("alice", &devices(list));
        assert_eq!(
            (a.availability, a.activity, a.note.as_deref()),
            (availability, activity, note),
            "row {i}: {list:?}"
        );
        assert_eq!(a.devices.len(), list.len(), "row {i}: every device listed");
    }
}

#[test]
fn device_documents_parse_with_kebab_case_values() {
    let d: DeviceDoc = serde_json::from_str(
        r#"{"availability":"do-not-disturb","activity":"idle","note":"meeting"}"#,
    )
    .unwrap();
    assert_eq!(d.availability, DoNotDisturb);
    assert_eq!(d.activity, Idle);
    assert!(
        serde_json::from_str::<DeviceDoc>(r#"{"availability":"maybe","activity":"idle"}"#).is_err()
    );
    assert!(serde_json::from_str::<DeviceDoc>(r#"{"availability":"busy"}"#).is_err());
    assert!(
        serde_json::from_str::<DeviceDoc>(r#"{"availability":"busy","activity":"idle","x":1}"#)
            .is_err()
    );
}

#[test]
fn watcher_lists_are_a_list_or_star() {
    assert_eq!(Watchers::parse(b"\"*\""), Some(Watchers::All));
    assert_eq!(Watchers::parse(b"[]"), Some(Watchers::Nobody));
    assert_eq!(Watchers::parse(b""), Some(Watchers::Nobody));
    let w = Watchers::parse(br#"["bob","carol"]"#).unwrap();
    assert!(w.permits("bob") && w.permits("carol") && !w.permits("dave"));
    assert_eq!(Watchers::parse(b"\"bob\""), None);
    assert_eq!(Watchers::parse(b"[1]"), None);
    assert_eq!(Watchers::parse(b"[\"\"]"), None);
    assert_eq!(
        Watchers::Nobody.with("bob").render(),
        br#"["bob"]"#.to_vec()
    );
    assert_eq!(Watchers::All.with("bob"), Watchers::All);
}

#[test]
fn topics_parse_into_their_four_kinds() {
    assert_eq!(
        Topic::parse("$presence/alice"),
        Some(Topic::Aggregate("alice"))
    );
    assert_eq!(
        Topic::parse("$presence/alice/devices/phone"),
        Some(Topic::Device("alice", "phone"))
    );
    assert_eq!(
        Topic::parse("$presence/alice/watchers"),
        Some(Topic::Watchers("alice"))
    );
    assert_eq!(
        Topic::parse("$presence/alice/requests/bob"),
        Some(Topic::Request("alice", "bob"))
    );
    for bad in [
        "$presence/",
        "$presence//devices/x",
        "$presence/a/devices/",
        "$presence/a/other",
        "$status/a",
    ] {
        assert_eq!(Topic::parse(bad), None, "{bad}");
    }
}
