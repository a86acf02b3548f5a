//! Criterion benches of the subscription trie and the retained-message trie.
//!
//! Owns the measurement of `TopicTree` insert/remove/match and `RetainTree` lookups by
//! wildcard filter at 1 k, 100 k and 1 M entries (a mix of literal, `+` and `#` filters).
//! It never asserts anything about the timings; sample sizes are small so the whole file
//! runs in a few minutes.
#![allow(clippy::unwrap_used)] // test and bench set-up: a failure should panic loudly

use std::hint::black_box;
use std::time::Duration;

use canopy_broker::retain::RetainTree;
use canopy_broker::topic_tree::TopicTree;
use canopy_proto::{TopicFilter, TopicName};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

/// Number of `site/<s>` prefixes for a tree of `n` entries: about the square root.
fn sites(n: usize) -> usize {
    (n as f64).sqrt() as usize
}

/// Filter `i` of a tree of `n`: 60% literal, 25% with `+`, 15% ending in `#`.
fn filter(i: usize, n: usize) -> TopicFilter {
    let s = i % sites(n);
    let text = match i % 20 {
        0..=11 => format!("site/{s}/dev/{i}/temp"),
        12..=16 => format!("site/{s}/+/{i}/temp"),
        _ => format!("site/{s}/dev/{i}/#"),
    };
    TopicFilter::new(&text).unwrap()
}

fn topic(text: &str) -> TopicName {
    TopicName::new(text).unwrap()
}

fn tree(n: usize) -> TopicTree<u32> {
    let mut t = TopicTree::new();
    for i in 0..n {
        t.insert(&filter(i, n), i as u32);
    }
    t
}

fn topic_tree(c: &mut Criterion) {
    let mut g = c.benchmark_group("topic_tree");
    for n in SIZES {
        let mut t = tree(n);
        let fresh = TopicFilter::new(&format!("site/{}/new/+/temp", n / 3)).unwrap();
        g.bench_with_input(BenchmarkId::new("insert_remove", n), &n, |b, _| {
            b.iter(|| {
                t.insert(&fresh, u32::MAX);
                black_box(t.remove_where(&fresh, |v| *v == u32::MAX));
            })
        });
        // A topic matched by one literal, one `+` and one `#` filter.
        let k = 12 + 20 * (n / 40);
        let hit = topic(&format!("site/{}/dev/{k}/temp", k % sites(n)));
        g.bench_with_input(BenchmarkId::new("match_hit", n), &n, |b, _| {
            b.iter(|| {
                let mut count = 0u32;
                t.for_each_match(black_box(&hit), |_| count += 1);
                black_box(count)
            })
        });
        let miss = topic("other/place/entirely/temp");
        g.bench_with_input(BenchmarkId::new("match_miss", n), &n, |b, _| {
            b.iter(|| {
                let mut count = 0u32;
                t.for_each_match(black_box(&miss), |_| count += 1);
                black_box(count)
            })
        });
    }
    g.finish();
}

fn retain_tree(c: &mut Criterion) {
    let mut g = c.benchmark_group("retain_tree");
    for n in SIZES {
        let s = sites(n);
        let mut t = RetainTree::new();
        for i in 0..n {
            t.insert(&topic(&format!("site/{}/dev/{i}/temp", i % s)), i as u32);
        }
        let filters = [
            ("one_site_plus", format!("site/{}/+/+/temp", 7 % s)),
            ("one_site_hash", format!("site/{}/#", 7 % s)),
            (
                "one_device_across_sites",
                format!("site/+/dev/{}/temp", n / 2),
            ),
            (
                "literal",
                format!("site/{}/dev/{}/temp", (n / 2) % s, n / 2),
            ),
        ];
        for (name, f) in filters {
            let f = TopicFilter::new(&f).unwrap();
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let mut count = 0u32;
                    t.for_each_match(black_box(&f), |_, _| count += 1);
                    black_box(count)
                })
            });
        }
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = topic_tree, retain_tree
}
criterion_main!(benches);
