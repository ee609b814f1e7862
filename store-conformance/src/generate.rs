//! Seeded, reproducible generation of session data for the generative
//! cases: a small PRNG (SplitMix64) and JSON values that stress codecs:
//! nesting up to [`Record::MAX_DEPTH`], extreme numbers, long and
//! non-ASCII strings, many keys.
//!
//! The seed comes from `SESSION_SUITE_SEED` (decimal or `0x` hex) when
//! set, else a fixed default, and every failure names it, so a failing run
//! is repeated exactly by setting it.

use serde_json::{Map, Number, Value};
use session_core::{Data, Record};

/// The seed used when `SESSION_SUITE_SEED` is not set.
pub(crate) const DEFAULT_SEED: u64 = 0x5e55_10c0_ffee_2026;

/// The seed for this run.
pub(crate) fn seed() -> u64 {
    std::env::var("SESSION_SUITE_SEED")
        .ok()
        .and_then(|text| {
            let text = text.trim();
            match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => text.parse().ok(),
            }
        })
        .unwrap_or(DEFAULT_SEED)
}

/// How much work the randomized cases do, as a multiple of their default
/// (which keeps the whole suite under a minute per backend on two cores):
/// `SESSION_SUITE_BUDGET` when set to a positive number (`100` for a long
/// soak, `0.2` for a quick look), else 1.
pub(crate) fn budget() -> f64 {
    std::env::var("SESSION_SUITE_BUDGET")
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|scale| scale.is_finite() && *scale > 0.0)
        .unwrap_or(1.0)
}

/// `default` scaled by [`budget`], at least 1.
pub(crate) fn scaled(default: usize) -> usize {
    // The product is finite and positive; `as` saturates anything huge.
    ((default as f64) * budget()).ceil().max(1.0) as usize
}

/// SplitMix64: tiny, fast, and the same sequence on every platform.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; slightly biased, which is fine here).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub(crate) fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const FLOATS: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.5,
    0.1,
    1.0 / 3.0,
    f64::MIN_POSITIVE,
    5e-324,
    f64::MAX,
    f64::MIN,
    f64::EPSILON,
    1e300,
    -1e-300,
    9_007_199_254_740_993.0,
    123_456_789.123_456_79,
];

const INTS: &[i64] = &[0, -1, 1, i64::MIN, i64::MAX, -9_007_199_254_740_993];
const UINTS: &[u64] = &[u64::MAX, u64::MAX - 1, 1 << 63, 9_007_199_254_740_993];

/// Characters from many ranges: ASCII, JSON's escapes and control
/// characters, Latin-1, CJK, the edges of the BMP and of Unicode, emoji.
const CHARS: &[char] = &[
    'a',
    'Z',
    '0',
    ' ',
    '"',
    '\\',
    '/',
    '\n',
    '\t',
    '\r',
    '\u{0}',
    '\u{1}',
    '\u{1f}',
    '\u{7f}',
    'é',
    'ß',
    'ø',
    'ü',
    '中',
    '文',
    '한',
    '글',
    'ア',
    '\u{fffd}',
    '\u{ffff}',
    '\u{feff}',
    '\u{2028}',
    '\u{10ffff}',
    '😀',
    '🦀',
    '\u{1f1fa}',
    '\u{301}',
    '{',
    '}',
    '[',
    ']',
    ':',
    ',',
];

/// A string: usually short, sometimes long (up to 20,000 characters).
pub(crate) fn string(rng: &mut Rng) -> String {
    let len = match rng.below(10) {
        0 => 0,
        1 => 1000 + rng.below(19_000),
        _ => rng.below(24),
    };
    if len > 100 && rng.chance(50) {
        // A long run of one character, then a mix.
        let c = *rng.pick(CHARS);
        let mut s: String = std::iter::repeat_n(c, len).collect();
        s.push(*rng.pick(CHARS));
        return s;
    }
    (0..len).map(|_| *rng.pick(CHARS)).collect()
}

fn number(rng: &mut Rng) -> Value {
    match rng.below(5) {
        0 => Value::from(*rng.pick(INTS)),
        1 => Value::from(*rng.pick(UINTS)),
        2 => Number::from_f64(*rng.pick(FLOATS)).map_or(Value::Null, Value::Number),
        3 => {
            // Any finite double, from random bits.
            let f = f64::from_bits(rng.next_u64());
            Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        _ => Value::from(rng.next_u64() as i64 >> rng.below(64)),
    }
}

/// A value at nesting `level` (the data object is level 1, so its values'
/// containers are level 2), never deeper than `max`.
pub(crate) fn value(rng: &mut Rng, level: usize, max: usize) -> Value {
    let can_nest = level <= max;
    match rng.below(if can_nest { 8 } else { 5 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 => number(rng),
        3 | 4 => Value::String(string(rng)),
        5 if rng.chance(20) => chain(rng, level, max),
        5 | 6 => {
            let len = rng.below(6);
            Value::Array((0..len).map(|_| value(rng, level + 1, max)).collect())
        }
        _ => {
            let len = rng.below(6);
            let mut map = Map::new();
            for _ in 0..len {
                map.insert(string(rng), value(rng, level + 1, max));
            }
            Value::Object(map)
        }
    }
}

/// Containers nested from `level` all the way down to `max`.
fn chain(rng: &mut Rng, level: usize, max: usize) -> Value {
    let mut inner = number(rng);
    for depth in (level..=max).rev() {
        inner = if depth % 2 == 0 {
            Value::Array(vec![inner])
        } else {
            let mut map = Map::new();
            map.insert(format!("d{depth}"), inner);
            Value::Object(map)
        };
    }
    inner
}

/// A session's data: a few keys, or (sometimes) hundreds.
pub(crate) fn data(rng: &mut Rng) -> Data {
    let keys = if rng.chance(10) {
        200 + rng.below(300)
    } else {
        rng.below(12)
    };
    let mut data = Data::new();
    for i in 0..keys {
        let key = if rng.chance(70) {
            string(rng)
        } else {
            format!("k{i}")
        };
        data.insert(key, value(rng, 2, Record::MAX_DEPTH));
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(items) => 1 + items.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    #[test]
    fn same_seed_same_data_and_depth_within_limit() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..50 {
            let (x, y) = (data(&mut a), data(&mut b));
            assert_eq!(x, y);
            let deepest = x.values().map(depth).max().unwrap_or(0);
            assert!(deepest < Record::MAX_DEPTH, "{deepest}");
        }
        let mut rng = Rng::new(1);
        let deep = chain(&mut rng, 2, Record::MAX_DEPTH);
        assert_eq!(depth(&deep), Record::MAX_DEPTH - 1);
    }
}
