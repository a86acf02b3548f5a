//! Model check of the resources service in queue mode: seeded random sequences of
//! acquire, renew, release, disconnect, session end, lease expiry (the clock advancing
//! through every timeout) and restart (a new service from the retained documents), run on
//! a [`FakeHost`]. After every step the service must agree with a plain model: never more
//! holders than the maximum, the same holders with the same grant numbers and lease ends,
//! the same queue in FIFO order, and every client's last answer telling it where it stands.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use canopy_proto::Protocol;
use serde_json::{Value, json};

use super::*;
use crate::services::testing::{FakeHost, message, offer};

const WALL: Ms = 1_700_000_000_000;
const LEASE: Ms = 1000;
const CLIENTS: [&str; 8] = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];

/// splitmix64: small, seeded, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The model: what the service must hold, written as plainly as possible.
#[derive(Default)]
struct Model {
    max: usize,
    queue_limit: usize,
    grace: Ms,
    holders: Vec<(String, u64, Ms)>,
    queue: VecDeque<(String, Ms)>,
    next_grant: u64,
    pending: HashMap<String, Ms>,
}

impl Model {
    fn involves(&self, c: &str) -> bool {
        self.holders.iter().any(|h| h.0 == c) || self.queue.iter().any(|w| w.0 == c)
    }

    fn promote(&mut self, now: Ms) {
        while self.holders.len() < self.max {
            let Some((c, lease)) = self.queue.pop_front() else {
                break;
            };
            self.holders.push((c, self.next_grant, now + lease));
            self.next_grant += 1;
        }
    }

    fn acquire(&mut self, c: &str, lease: Ms, now: Ms) {
        if let Some(h) = self.holders.iter_mut().find(|h| h.0 == c) {
            h.2 = now + lease;
        } else if let Some(w) = self.queue.iter_mut().find(|w| w.0 == c) {
            w.1 = lease;
        } else if self.holders.len() < self.max {
            self.holders
                .push((c.to_owned(), self.next_grant, now + lease));
            self.next_grant += 1;
        } else if self.queue.len() < self.queue_limit {
            self.queue.push_back((c.to_owned(), lease));
        }
    }

    fn remove(&mut self, c: &str, now: Ms) {
        self.holders.retain(|h| h.0 != c);
        self.queue.retain(|w| w.0 != c);
        self.promote(now);
    }

    /// Everything due by `now`: grace periods (in client order), then leases.
    fn due(&mut self, now: Ms) {
        let mut ended: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(c, _)| c.clone())
            .collect();
        ended.sort();
        for c in ended {
            self.pending.remove(&c);
            self.remove(&c, now);
        }
        self.holders.retain(|h| h.2 > now);
        self.promote(now);
    }

    fn next_deadline(&self) -> Option<Ms> {
        let leases = self.holders.iter().map(|h| h.2);
        leases.chain(self.pending.values().copied()).min()
    }
}

fn wall() -> Ms {
    WALL
}

struct World {
    rng: Rng,
    model: Model,
    service: ResourceService,
    host: FakeHost,
    config: Config,
    persistent: HashMap<&'static str, bool>,
    connected: HashMap<&'static str, bool>,
    /// Unix ms of the host's clock.
    now: Ms,
    /// Each client's last answer.
    last: HashMap<String, Value>,
    max_grant_seen: u64,
    /// How often each kind of answer was seen, and restarts with waiters (coverage).
    seen: HashMap<String, usize>,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let max = 1 + rng.below(3) as usize;
        let queue_limit = rng.below(5) as usize;
        let grace = [0, 0, 300][rng.below(3) as usize];
        let text = format!(
            "[[resource]]\nname = \"r\"\nmax_concurrent = {max}\nlease = \"{LEASE}ms\"\n\
             queue_limit = {queue_limit}\ngrace = \"{grace}ms\"\n"
        );
        let config = Config::from_toml(&text, "model").unwrap();
        let persistent = CLIENTS.iter().map(|c| (*c, rng.below(2) == 0)).collect();
        let mut service = ResourceService::with_wall_clock(&config, wall);
        let mut host = FakeHost::new();
        service.on_start(&mut host);
        World {
            rng,
            model: Model {
                max,
                queue_limit,
                grace,
                next_grant: 1,
                ..Model::default()
            },
            service,
            host,
            config,
            persistent,
            connected: CLIENTS.iter().map(|c| (*c, false)).collect(),
            now: WALL,
            last: HashMap::new(),
            max_grant_seen: 0,
            seen: HashMap::new(),
        }
    }

    fn ensure_connected(&mut self, c: &'static str) {
        if !self.connected[c] {
            let info = self.host.connect(c, self.persistent[c], Protocol::V311);
            self.service.on_connect(&mut self.host, &info, false);
            self.model.pending.remove(c);
            self.connected.insert(c, true);
        }
    }

    fn step(&mut self) -> String {
        let c = CLIENTS[self.rng.below(CLIENTS.len() as u64) as usize];
        match self.rng.below(100) {
            0..35 => {
                self.ensure_connected(c);
                let lease = self.rng.below(1500);
                let (payload, asked) = if lease < 100 {
                    (String::new(), LEASE)
                } else {
                    (format!(r#"{{"lease":"{lease}ms"}}"#), lease.min(LEASE))
                };
                let from = self.host.client(c);
                let msg = message("$resource/r/acquire", payload.as_bytes());
                let d = offer(&mut self.service, &mut self.host, from.as_ref(), &msg);
                assert_eq!(d, Some(Disposition::Consume));
                self.model.acquire(c, asked, self.now);
                format!("{c} acquire {asked}ms")
            }
            35..50 => {
                self.ensure_connected(c);
                let from = self.host.client(c);
                let msg = message("$resource/r/release", b"");
                offer(&mut self.service, &mut self.host, from.as_ref(), &msg);
                self.model.remove(c, self.now);
                format!("{c} release")
            }
            50..65 => {
                let Some(info) = self.host.disconnect(c).filter(|_| self.connected[c]) else {
                    return format!("{c} not connected");
                };
                self.connected.insert(c, false);
                self.service
                    .on_disconnect(&mut self.host, &info, "disconnected");
                if !info.persistent {
                    if self.model.grace == 0 {
                        self.model.remove(c, self.now);
                    } else if self.model.involves(c) {
                        self.model
                            .pending
                            .insert(c.to_owned(), self.now + self.model.grace);
                    }
                    self.service.on_session_end(&mut self.host, c);
                }
                format!("{c} disconnect")
            }
            65..70 => {
                if self.host.client(c).is_none() {
                    return format!("{c} has no session");
                }
                self.host.end_session(c);
                self.connected.insert(c, false);
                self.service.on_session_end(&mut self.host, c);
                if !self.model.pending.contains_key(c) {
                    self.model.remove(c, self.now);
                }
                format!("{c} session end")
            }
            70..95 => {
                let by = 1 + self.rng.below(700);
                self.advance(by);
                format!("advance {by}ms")
            }
            _ => {
                self.restart();
                "restart".to_owned()
            }
        }
    }

    /// Moves the clock by `by` ms, stopping at every timeout the service asks for.
    fn advance(&mut self, by: Ms) {
        let target = self.host.now() + Duration::from_millis(by);
        while let Some(at) = self.service.poll_timeout().filter(|at| *at <= target) {
            let at = at.max(self.host.now());
            self.host.set_now(at);
            self.now = self.service.clock.ms(at);
            self.service.handle_timeout(&mut self.host);
            self.model.due(self.now);
        }
        self.host.set_now(target);
        self.now = self.service.clock.ms(target);
        assert!(
            self.model.next_deadline().is_none_or(|t| t > self.now),
            "the service slept past a deadline"
        );
    }

    /// A new host from the old one's retained messages with the persistent sessions (all
    /// offline), and a new service from the same configuration.
    fn restart(&mut self) {
        if !self.model.queue.is_empty() {
            *self
                .seen
                .entry("restart with waiters".to_owned())
                .or_default() += 1;
        }
        let now = self.host.now();
        let mut host = FakeHost::with_retained(self.host.retained_messages());
        host.set_now(now);
        for c in CLIENTS {
            if self.persistent[c] && self.host.client(c).is_some() {
                host.connect(c, true, Protocol::V311);
                host.disconnect(c);
            }
            self.connected.insert(c, false);
        }
        self.host = host;
        let anchor = self.service.clock.anchor;
        self.service = ResourceService::with_wall_clock(&self.config, wall);
        self.service.clock.anchor = anchor;
        self.service.on_start(&mut self.host);
        let mut gone: Vec<String> = self.model.holders.iter().map(|h| h.0.clone()).collect();
        gone.extend(self.model.queue.iter().map(|w| w.0.clone()));
        gone.retain(|c| self.host.client(c).is_none());
        gone.sort();
        gone.dedup();
        self.model.pending.clear();
        for c in gone {
            self.model.remove(&c, self.now);
        }
        self.model.due(self.now);
    }

    /// Reads the answers published since the last check and compares service and model.
    fn check(&mut self, what: &str) {
        for m in self.host.take_published() {
            let Some(c) = m.topic.as_str().strip_prefix("$resource/r/client/") else {
                continue;
            };
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            let state = v["state"].as_str().unwrap_or("?").to_owned();
            *self.seen.entry(state).or_default() += 1;
            if v["state"] == "granted" {
                let g = v["grant"].as_u64().unwrap();
                let renewal = self
                    .last
                    .get(c)
                    .is_some_and(|l| l["state"] == "granted" && l["grant"] == g);
                assert!(
                    renewal || g > self.max_grant_seen,
                    "{what}: grant {g} after {}",
                    self.max_grant_seen
                );
                self.max_grant_seen = self.max_grant_seen.max(g);
            }
            self.last.insert(c.to_owned(), v);
        }
        let r = self.service.resource("r").unwrap();
        assert!(
            r.holders().len() <= self.model.max,
            "{what}: over the maximum"
        );
        let holders: Vec<(String, u64, Ms)> = r
            .holders()
            .iter()
            .map(|h| (h.client.clone(), h.grant, h.expires))
            .collect();
        let mut expected = self.model.holders.clone();
        expected.sort_by_key(|h| h.1);
        assert_eq!(holders, expected, "{what}: holders");
        let queue: Vec<&str> = r.queue().map(|w| w.client.as_str()).collect();
        let model_queue: Vec<&str> = self.model.queue.iter().map(|w| w.0.as_str()).collect();
        assert_eq!(queue, model_queue, "{what}: queue order");
        for (i, c) in model_queue.iter().enumerate() {
            assert_eq!(
                self.last.get(*c),
                Some(&json!({"state": "queued", "position": i + 1})),
                "{what}: {c}'s last answer"
            );
        }
        for (c, grant, expires) in &expected {
            assert_eq!(
                self.last.get(c),
                Some(&json!({"state": "granted", "grant": grant, "expires": expires})),
                "{what}: {c}'s last answer"
            );
        }
    }
}

#[test]
fn random_sequences_never_exceed_the_maximum_and_keep_fifo_order_and_positions() {
    let mut steps = 0;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for seed in 0..24u64 {
        let mut w = World::new(seed);
        for i in 0..500 {
            let what = w.step();
            w.check(&format!("seed {seed} step {i}: {what}"));
            steps += 1;
        }
        for (k, n) in w.seen {
            *seen.entry(k).or_default() += n;
        }
    }
    assert!(steps >= 10_000, "only {steps} steps");
    for kind in [
        "granted",
        "queued",
        "refused",
        "released",
        "expired",
        "restart with waiters",
    ] {
        assert!(
            seen.get(kind).is_some_and(|n| *n >= 10),
            "too few {kind:?}: {seen:?}"
        );
    }
}

/// The most units taken at any instant from `now` on by holders and reservations.
fn peak(r: &Resource, now: Ms) -> usize {
    let mut intervals: Vec<(Ms, Ms)> = r.holders().iter().map(|h| (now, h.expires)).collect();
    intervals.extend(r.slots().iter().map(|s| (s.start.max(now), s.end)));
    intervals
        .iter()
        .map(|&(at, _)| {
            intervals
                .iter()
                .filter(|&&(s, e)| s <= at && at < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn random_slot_schedules_never_overbook_and_grant_in_slot_order() {
    let mut steps = 0;
    for seed in 100..120u64 {
        let mut rng = Rng(seed);
        let max = 1 + rng.below(3) as usize;
        let mut r = Resource::new(Policy {
            max,
            lease: 1000,
            queue_limit: 1 + rng.below(6) as usize,
            mode: Mode::Slots,
            slot: 100 + rng.below(400),
        });
        let (mut now, mut out) = (WALL, Vec::new());
        let (mut last_start, mut last_grant) = (0, 0);
        for i in 0..250 {
            let c = CLIENTS[rng.below(CLIENTS.len() as u64) as usize];
            let online = rng.below(4) != 0;
            match rng.below(10) {
                0..5 => r.reserve(c, Reply::default(), now, &mut out),
                5..6 => r.release(c, Reply::default(), now, &mut out),
                6..7 => r.drop_client(c, now, &mut out),
                _ => {
                    let target = now + rng.below(300);
                    while let Some(t) = r.next_deadline().filter(|t| *t <= target) {
                        now = t.max(now);
                        r.tick(now, &|_| online, &mut out);
                    }
                    now = target;
                }
            }
            for n in out.drain(..) {
                // A holder asking again hears its grant again: only new grants count.
                if let Answer::Granted { grant, expires } = n.answer
                    && grant > last_grant
                {
                    let start = expires - r.policy().slot;
                    assert!(
                        start >= last_start && start <= now,
                        "seed {seed} step {i}: slot of {n:?} granted out of order at {now}"
                    );
                    (last_start, last_grant) = (start, grant);
                }
            }
            assert!(
                r.holders().len() <= max,
                "seed {seed} step {i}: over the maximum"
            );
            assert!(peak(&r, now) <= max, "seed {seed} step {i}: overbooked");
            steps += 1;
        }
    }
    assert_eq!(steps, 5000);
}
