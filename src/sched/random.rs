//! The scheduler's source of randomness: SplitMix64, seeded by the caller.
//!
//! The scheduler never draws entropy itself: the daemon seeds it from the clock and its pid,
//! tests and simulations from a fixed number, so that a run is reproducible from its seed.
//! Only `oqmgr_backoff_jitter` draws from it, and only when the jitter is on.

/// SplitMix64 (Steele, Lea, Flood 2014): one 64-bit word of state, every seed usable
/// (zero included), full period of 2^64, passes BigCrush. Not for secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0), by Lemire's multiply-and-shift: the bias is
    /// at most n / 2^64, nothing for the spans of seconds drawn here.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // The first outputs for seed 1234567, from the reference C implementation
        // (prng.di.unimi.it/splitmix64.c).
        let mut r = SplitMix64::new(1_234_567);
        let want = [
            6_457_827_717_110_365_317,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ];
        for w in want {
            assert_eq!(r.next_u64(), w);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_another_seed_another() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let mut r = SplitMix64::new(42);
        assert_eq!((0..8).map(|_| r.next_u64()).collect::<Vec<_>>(), a);
        let mut r = SplitMix64::new(43);
        assert_ne!((0..8).map(|_| r.next_u64()).collect::<Vec<_>>(), a);
        // Seed 0 is no fixed point.
        let mut r = SplitMix64::new(0);
        assert_ne!(r.next_u64(), r.next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it_evenly() {
        let mut r = SplitMix64::new(7);
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            let x = r.below(10);
            assert!(x < 10);
            counts[x as usize] += 1;
        }
        // 10 000 expected per bucket; a fair generator stays well within ±5 %.
        for c in counts {
            assert!((9_500..=10_500).contains(&c), "{counts:?}");
        }
    }
}
