//! Unit tests of the resource state machine, one behaviour each, on a fake clock.

use super::*;

fn queue(max: usize, queue_limit: usize) -> Resource {
    Resource::new(Policy {
        max,
        lease: 1000,
        queue_limit,
        mode: Mode::Queue,
        slot: 1000,
    })
}

fn slots(max: usize, slot: Ms) -> Resource {
    Resource::new(Policy {
        max,
        lease: slot,
        queue_limit: 10,
        mode: Mode::Slots,
        slot,
    })
}

/// `(client, answer)` pairs of `out`, emptying it.
fn said(out: &mut Vec<Notice>) -> Vec<(String, Answer)> {
    out.drain(..).map(|n| (n.client, n.answer)).collect()
}

fn a(c: &str, answer: Answer) -> (String, Answer) {
    (c.to_owned(), answer)
}

#[test]
fn below_the_maximum_a_grant_comes_at_once_then_requesters_queue_with_positions() {
    let (mut r, mut out) = (queue(2, 10), Vec::new());
    for c in ["a", "b", "c", "d"] {
        r.acquire(c, None, Reply::default(), 0, &mut out);
    }
    assert_eq!(
        said(&mut out),
        [
            a(
                "a",
                Answer::Granted {
                    grant: 1,
                    expires: 1000
                }
            ),
            a(
                "b",
                Answer::Granted {
                    grant: 2,
                    expires: 1000
                }
            ),
            a("c", Answer::Queued { position: 1 }),
            a("d", Answer::Queued { position: 2 }),
        ]
    );
}

#[test]
fn release_grants_the_head_at_once_and_every_waiter_hears_its_new_position() {
    let (mut r, mut out) = (queue(1, 10), Vec::new());
    for c in ["a", "b", "c"] {
        r.acquire(c, None, Reply::default(), 0, &mut out);
    }
    out.clear();
    r.release("a", Reply::default(), 10, &mut out);
    assert_eq!(
        said(&mut out),
        [
            a(
                "b",
                Answer::Granted {
                    grant: 2,
                    expires: 1010
                }
            ),
            a("c", Answer::Queued { position: 1 }),
            a("a", Answer::Released { grant: Some(1) }),
        ]
    );
}

#[test]
fn a_waiter_leaving_moves_only_those_behind_it() {
    let (mut r, mut out) = (queue(1, 10), Vec::new());
    for c in ["a", "b", "c", "d"] {
        r.acquire(c, None, Reply::default(), 0, &mut out);
    }
    out.clear();
    r.drop_client("c", 5, &mut out);
    assert_eq!(said(&mut out), [a("d", Answer::Queued { position: 2 })]);
    let order: Vec<&str> = r.queue().map(|w| w.client.as_str()).collect();
    assert_eq!(order, ["b", "d"]);
}

#[test]
fn renewal_keeps_the_grant_number_and_moves_the_lease_end() {
    let (mut r, mut out) = (queue(1, 10), Vec::new());
    r.acquire("a", Some(300), Reply::default(), 0, &mut out);
    r.acquire("a", None, Reply::default(), 200, &mut out);
    assert_eq!(
        said(&mut out),
        [
            a(
                "a",
                Answer::Granted {
                    grant: 1,
                    expires: 300
                }
            ),
            a(
                "a",
                Answer::Granted {
                    grant: 1,
                    expires: 1200
                }
            ),
        ]
    );
    r.acquire("b", Some(5000), Reply::default(), 0, &mut out);
    r.release("a", Reply::default(), 300, &mut out);
    assert_eq!(
        r.holders().first().map(|h| (h.grant, h.expires)),
        Some((2, 1300)),
        "a new grant number; the lease asked for is capped at the configured one"
    );
}

#[test]
fn a_lease_that_ends_frees_the_unit_for_the_next_in_line() {
    let (mut r, mut out) = (queue(1, 10), Vec::new());
    r.acquire("a", None, Reply::default(), 0, &mut out);
    r.acquire("b", None, Reply::default(), 0, &mut out);
    out.clear();
    assert_eq!(r.next_deadline(), Some(1000));
    r.tick(999, &|_| true, &mut out);
    assert!(out.is_empty());
    r.tick(1000, &|_| true, &mut out);
    assert_eq!(
        said(&mut out),
        [
            a("a", Answer::Expired { grant: Some(1) }),
            a(
                "b",
                Answer::Granted {
                    grant: 2,
                    expires: 2000
                }
            ),
        ]
    );
}

#[test]
fn a_full_queue_refuses_and_a_zero_queue_never_waits() {
    let (mut r, mut out) = (queue(1, 1), Vec::new());
    for c in ["a", "b", "c"] {
        r.acquire(c, None, Reply::default(), 0, &mut out);
    }
    assert_eq!(
        said(&mut out).pop(),
        Some(a(
            "c",
            Answer::Refused {
                reason: "queue full"
            }
        ))
    );
    let mut r = queue(1, 0);
    r.acquire("a", None, Reply::default(), 0, &mut out);
    r.acquire("b", None, Reply::default(), 0, &mut out);
    assert_eq!(
        said(&mut out).pop(),
        Some(a(
            "b",
            Answer::Refused {
                reason: "queue full"
            }
        ))
    );
    assert_eq!(r.counters().refused, 1);
}

#[test]
fn asking_again_while_waiting_repeats_the_position_without_moving() {
    let (mut r, mut out) = (queue(1, 10), Vec::new());
    for c in ["a", "b", "c", "b"] {
        r.acquire(c, None, Reply::default(), 0, &mut out);
    }
    assert_eq!(
        said(&mut out).pop(),
        Some(a("b", Answer::Queued { position: 1 }))
    );
}

#[test]
fn slots_are_scheduled_back_to_back_after_current_leases() {
    let (mut r, mut out) = (slots(1, 100), Vec::new());
    for c in ["a", "b", "c"] {
        r.reserve(c, Reply::default(), 10, &mut out);
    }
    assert_eq!(
        said(&mut out),
        [
            a(
                "a",
                Answer::Scheduled {
                    start: 10,
                    end: 110
                }
            ),
            a(
                "a",
                Answer::Granted {
                    grant: 1,
                    expires: 110
                }
            ),
            a(
                "b",
                Answer::Scheduled {
                    start: 110,
                    end: 210
                }
            ),
            a(
                "c",
                Answer::Scheduled {
                    start: 210,
                    end: 310
                }
            ),
        ]
    );
    assert_eq!(r.next_slot(10), Some(310));
    r.tick(110, &|_| true, &mut out);
    assert_eq!(
        said(&mut out),
        [
            a("a", Answer::Expired { grant: Some(1) }),
            a(
                "b",
                Answer::Granted {
                    grant: 2,
                    expires: 210
                }
            ),
        ]
    );
}

#[test]
fn two_units_give_two_slots_side_by_side() {
    let (mut r, mut out) = (slots(2, 100), Vec::new());
    for c in ["a", "b", "c", "d"] {
        r.reserve(c, Reply::default(), 0, &mut out);
    }
    let scheduled: Vec<(Ms, Ms)> = said(&mut out)
        .into_iter()
        .filter_map(|(_, ans)| match ans {
            Answer::Scheduled { start, end } => Some((start, end)),
            _ => None,
        })
        .collect();
    assert_eq!(scheduled, [(0, 100), (0, 100), (100, 200), (100, 200)]);
}

#[test]
fn an_early_release_does_not_move_a_slot_forward_and_a_gap_is_filled() {
    let (mut r, mut out) = (slots(1, 100), Vec::new());
    r.reserve("a", Reply::default(), 0, &mut out);
    r.reserve("b", Reply::default(), 0, &mut out);
    r.release("a", Reply::default(), 20, &mut out);
    out.clear();
    r.reserve("c", Reply::default(), 20, &mut out);
    assert_eq!(
        said(&mut out).first(),
        Some(&a(
            "c",
            Answer::Scheduled {
                start: 200,
                end: 300
            }
        )),
        "a slot of 100 does not fit in the 80 left before b's"
    );
    let (mut r, mut out) = (slots(1, 100), Vec::new());
    r.reserve("a", Reply::default(), 0, &mut out);
    r.reserve("b", Reply::default(), 0, &mut out);
    r.release("a", Reply::default(), 0, &mut out);
    r.reserve("c", Reply::default(), 0, &mut out);
    assert_eq!(
        r.slots().first().map(|s| s.start),
        Some(100),
        "b keeps its slot"
    );
    assert_eq!(
        r.holders().first().map(|h| (h.client.as_str(), h.expires)),
        Some(("c", 100)),
        "c fills the gap a left"
    );
}

#[test]
fn a_slot_whose_client_is_not_connected_when_it_begins_expires_unused() {
    let (mut r, mut out) = (slots(1, 100), Vec::new());
    r.reserve("a", Reply::default(), 0, &mut out);
    r.reserve("b", Reply::default(), 0, &mut out);
    r.reserve("c", Reply::default(), 0, &mut out);
    out.clear();
    r.tick(100, &|c| c != "b", &mut out);
    assert_eq!(
        said(&mut out),
        [
            a("a", Answer::Expired { grant: Some(1) }),
            a("b", Answer::Expired { grant: None }),
        ]
    );
    r.tick(200, &|_| true, &mut out);
    assert_eq!(
        said(&mut out),
        [a(
            "c",
            Answer::Granted {
                grant: 2,
                expires: 300
            }
        )]
    );
}

#[test]
fn reserve_is_refused_in_queue_mode() {
    let (mut r, mut out) = (queue(1, 10), Vec::new());
    r.reserve("a", Reply::default(), 0, &mut out);
    assert_eq!(
        said(&mut out),
        [a(
            "a",
            Answer::Refused {
                reason: "not a slots resource"
            }
        )]
    );
}

#[test]
fn restore_keeps_holders_and_queue_and_grant_numbers_keep_growing() {
    let (mut r, mut out) = (queue(1, 10), Vec::new());
    for c in ["a", "b", "c"] {
        r.acquire(c, None, Reply::default(), 0, &mut out);
    }
    let snap = r.snapshot();
    out.clear();
    let mut back = Resource::restore(r.policy().clone(), snap, 10, &mut out);
    assert!(out.is_empty(), "nobody moved: nothing to say");
    back.release("a", Reply::default(), 20, &mut out);
    assert_eq!(
        said(&mut out).first(),
        Some(&a(
            "b",
            Answer::Granted {
                grant: 2,
                expires: 1020
            }
        ))
    );
}

#[test]
fn restore_under_a_lower_maximum_expires_the_newest_grants() {
    let (mut r, mut out) = (queue(3, 10), Vec::new());
    for c in ["a", "b", "c"] {
        r.acquire(c, None, Reply::default(), 0, &mut out);
    }
    out.clear();
    let mut policy = r.policy().clone();
    policy.max = 1;
    let back = Resource::restore(policy, r.snapshot(), 0, &mut out);
    assert_eq!(back.holders().len(), 1);
    assert_eq!(
        said(&mut out),
        [
            a("b", Answer::Expired { grant: Some(2) }),
            a("c", Answer::Expired { grant: Some(3) }),
        ]
    );
}

#[test]
fn a_due_slot_behind_a_full_house_waits_for_a_lease_end_without_a_past_deadline() {
    let snap = Snapshot {
        next_grant: 2,
        holders: vec![Holder {
            client: "a".into(),
            grant: 1,
            expires: 1000,
            reply: Reply::default(),
        }],
        queue: Vec::new(),
        slots: vec![
            Reservation {
                client: "b".into(),
                start: 0,
                end: 100,
                reply: Reply::default(),
            },
            Reservation {
                client: "c".into(),
                start: 500,
                end: 1500,
                reply: Reply::default(),
            },
        ],
    };
    let mut out = Vec::new();
    let mut r = Resource::restore(slots(1, 100).policy().clone(), snap, 50, &mut out);
    assert_eq!(r.next_deadline(), Some(1000), "not 0: the house is full");
    r.tick(1000, &|_| true, &mut out);
    assert_eq!(
        said(&mut out),
        [
            a("a", Answer::Expired { grant: Some(1) }),
            a("b", Answer::Expired { grant: None }),
            a(
                "c",
                Answer::Granted {
                    grant: 2,
                    expires: 1500
                }
            ),
        ]
    );
}
