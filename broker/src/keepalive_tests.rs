use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::outbox::Outbox;

fn watched(wheel: &mut Wheel, secs: u16, now: Instant) -> Arc<Outbox> {
    let outbox = Outbox::new(8);
    outbox.liveness().start(secs, now);
    assert_eq!(wheel.watch(&outbox, now), secs > 0);
    outbox
}

#[test]
fn a_silent_connection_expires_after_one_and_a_half_keep_alives() {
    // [MQTT-3.1.2-24]
    let t0 = Instant::now();
    let mut wheel = Wheel::default();
    let o = watched(&mut wheel, 2, t0);
    assert_eq!(wheel.sweep(t0 + Duration::from_millis(2_999)), 0);
    assert!(!o.liveness().take_expired());
    assert_eq!(wheel.sweep(t0 + Duration::from_millis(3_000) + SLOT), 1);
    assert!(o.liveness().take_expired());
    assert!(
        wheel.is_empty(),
        "an expired connection is not looked at again"
    );
}

#[test]
fn a_connection_heard_from_is_filed_under_its_new_deadline() {
    // [MQTT-3.1.2-23]: any packet within the keep alive keeps the connection open.
    let t0 = Instant::now();
    let mut wheel = Wheel::default();
    let o = watched(&mut wheel, 2, t0);
    o.liveness().heard(t0 + Duration::from_millis(2_000));
    assert_eq!(wheel.sweep(t0 + Duration::from_millis(3_200)), 0);
    assert_eq!(wheel.len(), 1);
    assert!(!o.liveness().take_expired());
    assert_eq!(wheel.sweep(t0 + Duration::from_millis(5_000) + SLOT), 1);
    assert!(o.liveness().take_expired());
}

#[test]
fn a_paused_connection_is_never_blamed_for_the_silence() {
    // While the broker reads nothing (back-pressure), the client's silence is not its own.
    let t0 = Instant::now();
    let mut wheel = Wheel::default();
    let o = watched(&mut wheel, 1, t0);
    o.liveness().pause();
    for step in 1..=10 {
        assert_eq!(wheel.sweep(t0 + Duration::from_secs(step * 2)), 0);
    }
    assert!(!o.liveness().take_expired());
    o.liveness().heard(t0 + Duration::from_secs(20));
    assert_eq!(wheel.sweep(t0 + Duration::from_millis(21_500) + SLOT), 1);
}

#[test]
fn keep_alive_zero_and_ended_connections_are_not_supervised() {
    // [MQTT-3.1.2-22]: keep alive 0 turns the mechanism off.
    let t0 = Instant::now();
    let mut wheel = Wheel::default();
    let off = watched(&mut wheel, 0, t0);
    let ended = watched(&mut wheel, 1, t0);
    ended.liveness().stop();
    let dropped = watched(&mut wheel, 1, t0);
    drop(dropped);
    assert_eq!(wheel.sweep(t0 + Duration::from_secs(60)), 0);
    assert!(wheel.is_empty());
    assert!(!off.liveness().take_expired() && !ended.liveness().take_expired());
}

#[test]
fn expiry_wakes_the_connection_through_its_outbox() {
    let t0 = Instant::now();
    let mut wheel = Wheel::default();
    let o = watched(&mut wheel, 1, t0);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(o.poll_notified(&mut cx).is_pending());
    wheel.sweep(t0 + Duration::from_secs(2));
    assert!(o.poll_notified(&mut cx).is_ready());
    assert!(o.liveness().take_expired());
}

#[test]
fn the_next_deadline_is_the_earliest_filed() {
    let t0 = Instant::now();
    let mut wheel = Wheel::default();
    assert!(wheel.next_due().is_none());
    let _late = watched(&mut wheel, 60, t0);
    let _soon = watched(&mut wheel, 1, t0);
    let due = wheel.next_due().unwrap();
    assert!(due <= t0 + Duration::from_millis(1_500) + SLOT + Duration::from_millis(50));
}
