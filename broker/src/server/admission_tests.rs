use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

fn limits(max: usize, queue: usize) -> Limits {
    Limits {
        max_connections: max,
        admission_queue: queue,
        admission_timeout: Duration::from_millis(200),
        ..Limits::default()
    }
}

fn admission(l: &Limits) -> Admission {
    Admission::new(l, Arc::new(Metrics::default()))
}

#[tokio::test]
async fn places_beyond_max_connections_are_given_in_arrival_order() {
    let a = admission(&limits(2, 10));
    let mut served = Vec::new();
    for _ in 0..2 {
        let admit = a.enter(a.ticket().await);
        served.push(admit.admitted(Duration::from_secs(5)).await.unwrap());
    }
    let waiting: Vec<Admit> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(a.enter(a.ticket().await));
        }
        v
    };
    assert_eq!(Metrics::get(&a.metrics.connections_waiting), 3);
    assert_eq!(Metrics::get(&a.metrics.connections_queued), 3);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (i, w) in waiting.into_iter().enumerate() {
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Ok(place) = w.admitted(Duration::from_secs(5)).await {
                tx.send((i, place)).unwrap();
            }
        });
    }
    tokio::task::yield_now().await;
    assert_eq!(a.serving(), 2);
    // Each freed place goes to the oldest waiter.
    served.pop();
    let (first, place0) = rx.recv().await.unwrap();
    served.pop();
    let (second, _place1) = rx.recv().await.unwrap();
    drop(place0);
    let (third, _place2) = rx.recv().await.unwrap();
    assert_eq!((first, second, third), (0, 1, 2));
    assert_eq!(a.serving(), 2);
    assert_eq!(Metrics::get(&a.metrics.connections_waiting), 0);
}

#[tokio::test]
async fn a_waiter_that_gave_up_is_skipped_and_its_place_passes_on() {
    let a = admission(&limits(1, 10));
    let held = a
        .enter(a.ticket().await)
        .admitted(Duration::from_secs(1))
        .await
        .unwrap();
    let early = a.enter(a.ticket().await);
    let late = a.enter(a.ticket().await);
    assert!(
        early.admitted(Duration::from_millis(10)).await.is_err(),
        "no place freed: the wait times out"
    );
    drop(held);
    let place = late.admitted(Duration::from_secs(5)).await;
    assert!(place.is_ok());
    assert_eq!(a.serving(), 1);
    drop(place);
    assert_eq!(a.serving(), 0);
}

#[tokio::test]
async fn sockets_beyond_max_connections_and_the_queue_are_not_accepted() {
    let a = admission(&limits(1, 1));
    let t1 = a.ticket().await;
    let _t2 = a.ticket().await;
    let third = tokio::time::timeout(Duration::from_millis(50), a.ticket()).await;
    assert!(third.is_err(), "a third ticket must wait");
    drop(t1);
    let third = tokio::time::timeout(Duration::from_secs(5), a.ticket()).await;
    assert!(third.is_ok(), "a closed socket frees a ticket");
}

#[tokio::test]
async fn the_place_count_returns_to_zero_when_everyone_leaves() {
    let a = admission(&limits(3, 3));
    let mut all = Vec::new();
    for _ in 0..6 {
        all.push(a.enter(a.ticket().await));
    }
    let mut places = Vec::new();
    for admit in all.drain(..3) {
        places.push(admit.admitted(Duration::from_secs(1)).await.unwrap());
    }
    drop(all);
    drop(places);
    assert_eq!(a.serving(), 0);
    let again = a.enter(a.ticket().await);
    assert!(again.admitted(Duration::from_millis(10)).await.is_ok());
}

#[tokio::test]
async fn per_address_rate_counts_each_source_separately() {
    let mut l = limits(10, 10);
    l.connection_rate_per_address = 2;
    let a = admission(&l);
    let one = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let two = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    assert!(a.source_allowed(one));
    assert!(a.source_allowed(one));
    assert!(!a.source_allowed(one));
    assert!(a.source_allowed(two));
    assert_eq!(Metrics::get(&a.metrics.connections_rate_limited), 1);
}

#[test]
fn ipv6_sources_are_counted_per_64_prefix() {
    let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
    let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(source_key(IpAddr::V6(a)), source_key(IpAddr::V6(b)));
    assert_ne!(source_key(IpAddr::V6(a)), source_key(IpAddr::V6(c)));
    let mapped: Ipv6Addr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(
        source_key(IpAddr::V6(mapped)),
        source_key(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
    );
}

#[tokio::test]
async fn sources_beyond_the_table_share_one_budget() {
    let mut l = limits(10, 10);
    l.connection_rate_per_address = 1;
    let a = admission(&l);
    for i in 0..MAX_TRACKED_SOURCES as u32 {
        assert!(a.source_allowed(IpAddr::V4(Ipv4Addr::from(i))));
    }
    let extra = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
    assert!(a.source_allowed(extra(1)));
    assert!(!a.source_allowed(extra(2)), "the shared budget is spent");
    assert_eq!(a.rates().sources.len(), MAX_TRACKED_SOURCES);
}

#[tokio::test(start_paused = true)]
async fn total_rate_makes_the_accept_loop_wait_for_the_next_second() {
    let mut l = limits(100, 0);
    l.connection_rate = 3;
    let a = admission(&l);
    let start = Instant::now();
    let mut tickets = Vec::new();
    for _ in 0..7 {
        tickets.push(a.ticket().await);
    }
    // 3 in the first second, 3 in the second, the 7th in the third.
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn accept_errors_back_off_boundedly_and_not_for_a_peer_reset() {
    let a = admission(&limits(1, 0));
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    let start = Instant::now();
    let b = a.back_off(&reset, Admission::first_backoff()).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(b, Admission::first_backoff());
    let emfile = std::io::Error::from_raw_os_error(24);
    let mut b = Admission::first_backoff();
    for _ in 0..20 {
        b = a.back_off(&emfile, b).await;
    }
    assert_eq!(b, BACKOFF_MAX);
}

#[tokio::test]
async fn a_closed_connection_ends_the_back_off_at_once() {
    let a = Arc::new(admission(&limits(1, 0)));
    let t = a.ticket().await;
    let emfile = std::io::Error::from_raw_os_error(24);
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.back_off(&emfile, Duration::from_secs(3600)).await })
    };
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(t);
    let done = tokio::time::timeout(Duration::from_secs(5), waiter).await;
    assert!(
        done.is_ok(),
        "the back-off must end when a ticket is given back"
    );
}
