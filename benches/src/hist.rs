//! A fixed-size latency histogram with about 1.5% relative precision.
//!
//! Owns the recording and percentile arithmetic of end-to-end latencies. It never
//! allocates while recording (the buckets are allocated once) and never reads a clock.

/// Sub-buckets per power of two: 64 gives a relative error under 1.6%.
const SUB: u64 = 64;
/// Powers of two covered above the linear range: up to 2^40 ns (about 18 minutes).
const OCTAVES: u64 = 35;

/// Latencies in nanoseconds, log-linear buckets.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            buckets: vec![0; (SUB + SUB * OCTAVES) as usize],
            count: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let octave = u64::from(63 - v.leading_zeros()) - 5; // v >= 64 = 2^6: octave >= 1
        let sub = (v >> (octave - 1)) - SUB; // 64..128 -> 0..64
        ((SUB * octave + sub) as usize).min((SUB + SUB * OCTAVES) as usize - 1)
    }

    fn lower_bound(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let octave = i / SUB;
        let sub = i % SUB;
        (SUB + sub) << (octave - 1)
    }

    /// Records one latency.
    pub fn record(&mut self, ns: u64) {
        let i = Self::index(ns);
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.count += 1;
        self.max = self.max.max(ns);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest sample, nanoseconds.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1), nanoseconds (the lower bound of its bucket);
    /// 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::lower_bound(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [
            (0.5, 50_000_000.0),
            (0.99, 99_000_000.0),
            (0.999, 99_900_000.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), 100_000_000);
    }

    #[test]
    fn small_values_are_exact_and_merge_adds_counts() {
        let mut a = Histogram::new();
        a.record(5);
        let mut b = Histogram::new();
        b.record(7);
        b.record(7);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.quantile(0.5), 7);
        assert_eq!(a.quantile(0.1), 5);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        assert_eq!(Histogram::new().quantile(0.99), 0);
    }
}
