//! A small coverage-free mutation engine: a seeded PRNG, byte-level mutations, splicing
//! between corpus entries and dictionary tokens.

/// xorshift64* — fast, seedable and good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so nearby seeds give unrelated streams and zero is fine.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A length that is usually small: 1..=max, skewed towards 1.
    pub fn small_len(&mut self, max: usize) -> usize {
        let max = max.max(1);
        let cap = 1usize << self.below(8);
        1 + self.below(cap.min(max))
    }
}

/// Byte values that tend to hit edge cases in parsers.
const INTERESTING_BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'\n', b'\r', b' ', b'\t', b'\\', b'`', b'"', b'\'', b'$', b'{', b'}',
    b'/', b'.', b'=', b':', b'-', b'0', b'7', b'9', b'[', b']', b',', b'#',
];

/// ASCII numbers that tend to hit edge cases (sizes, modes, ids, counts).
const INTERESTING_NUMBERS: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"7",
    b"8",
    b"511",
    b"777",
    b"4095",
    b"7777777",
    b"77777777777",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"18446744073709551616",
    b"1e400",
    b"0.5",
];

/// Mutates inputs for one target: it knows the target's dictionary, maximum length and
/// record alignment.
#[derive(Debug, Clone)]
pub struct Mutator {
    dictionary: &'static [&'static [u8]],
    max_len: usize,
    block: usize,
}

impl Mutator {
    /// A mutator with the given tokens, length cap and record alignment (1 for none).
    pub fn new(dictionary: &'static [&'static [u8]], max_len: usize, block: usize) -> Mutator {
        Mutator {
            dictionary,
            max_len: max_len.max(1),
            block: block.max(1),
        }
    }

    /// A new input derived from `base`: a stack of 1 to 16 mutations, some of which take
    /// material from `other` (another corpus entry).
    pub fn mutate(&self, rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
        let mut data = base.to_vec();
        let rounds = 1 << rng.below(5);
        for _ in 0..rounds {
            self.mutate_once(rng, &mut data, other);
        }
        data.truncate(self.max_len);
        data
    }

    fn mutate_once(&self, rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
        match rng.below(14) {
            0 => flip_bit(rng, data),
            1 => set_interesting_byte(rng, data),
            2 => add_to_byte(rng, data),
            3 => insert_random(rng, data),
            4 => delete_range(rng, data),
            5 => duplicate_range(rng, data),
            6 => splice_insert(rng, data, other),
            7 => splice_overwrite(rng, data, other),
            8 => crossover(rng, data, other),
            9 | 10 => self.insert_token(rng, data),
            11 => self.overwrite_token(rng, data),
            12 => replace_number(rng, data),
            _ => self.block_op(rng, data, other),
        }
    }

    fn insert_token(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        let Some(tok) = pick(rng, self.dictionary) else {
            return insert_random(rng, data);
        };
        let at = rng.below(data.len() + 1);
        data.splice(at..at, tok.iter().copied());
    }

    fn overwrite_token(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        let Some(tok) = pick(rng, self.dictionary) else {
            return set_interesting_byte(rng, data);
        };
        let at = rng.below(data.len() + 1);
        let end = (at + tok.len()).min(data.len());
        data.splice(at..end, tok.iter().copied());
    }

    /// Record-aligned operations (tar blocks): copy, drop or swap whole blocks, or write a
    /// token at a field offset inside a block.
    fn block_op(&self, rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
        let b = self.block;
        if b == 1 {
            return self.insert_token(rng, data);
        }
        let blocks = data.len() / b;
        let other_blocks = other.len() / b;
        match rng.below(4) {
            0 if other_blocks > 0 => {
                let src = rng.below(other_blocks) * b;
                let at = rng.below(blocks + 1) * b;
                data.splice(at..at, other[src..src + b].iter().copied());
            }
            1 if blocks > 0 => {
                let at = rng.below(blocks) * b;
                data.drain(at..at + b);
            }
            2 if blocks > 1 => {
                let (x, y) = (rng.below(blocks) * b, rng.below(blocks) * b);
                for i in 0..b {
                    data.swap(x + i, y + i);
                }
            }
            _ if blocks > 0 => {
                // Tar header field offsets: name, mode, uid, gid, size, mtime, typeflag,
                // linkname, magic, uname, devmajor, prefix.
                const FIELDS: &[usize] =
                    &[0, 100, 108, 116, 124, 136, 156, 157, 257, 265, 329, 345];
                let Some(tok) = pick(rng, self.dictionary) else {
                    return;
                };
                let at = rng.below(blocks) * b + FIELDS[rng.below(FIELDS.len())];
                let end = (at + tok.len()).min(data.len());
                if at < end {
                    data[at..end].copy_from_slice(&tok[..end - at]);
                }
            }
            _ => insert_random(rng, data),
        }
    }
}

fn pick<'a>(rng: &mut Rng, items: &[&'a [u8]]) -> Option<&'a [u8]> {
    if items.is_empty() {
        None
    } else {
        Some(items[rng.below(items.len())])
    }
}

fn flip_bit(rng: &mut Rng, data: &mut [u8]) {
    if !data.is_empty() {
        let i = rng.below(data.len());
        data[i] ^= 1 << rng.below(8);
    }
}

fn set_interesting_byte(rng: &mut Rng, data: &mut Vec<u8>) {
    let v = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
    if data.is_empty() {
        data.push(v);
    } else {
        let i = rng.below(data.len());
        data[i] = v;
    }
}

fn add_to_byte(rng: &mut Rng, data: &mut [u8]) {
    if !data.is_empty() {
        let i = rng.below(data.len());
        let delta = 1 + rng.below(16) as u8;
        data[i] = if rng.one_in(2) {
            data[i].wrapping_add(delta)
        } else {
            data[i].wrapping_sub(delta)
        };
    }
}

fn insert_random(rng: &mut Rng, data: &mut Vec<u8>) {
    let n = rng.small_len(64);
    let at = rng.below(data.len() + 1);
    let fill: Vec<u8> = if rng.one_in(2) {
        let v = rng.next_u64() as u8;
        vec![v; n]
    } else {
        (0..n).map(|_| rng.next_u64() as u8).collect()
    };
    data.splice(at..at, fill);
}

fn delete_range(rng: &mut Rng, data: &mut Vec<u8>) {
    if !data.is_empty() {
        let at = rng.below(data.len());
        let n = rng.small_len(data.len() - at);
        data.drain(at..at + n);
    }
}

fn duplicate_range(rng: &mut Rng, data: &mut Vec<u8>) {
    if !data.is_empty() {
        let from = rng.below(data.len());
        let n = rng.small_len(data.len() - from);
        let chunk = data[from..from + n].to_vec();
        let at = rng.below(data.len() + 1);
        data.splice(at..at, chunk);
    }
}

fn chunk_of<'a>(rng: &mut Rng, other: &'a [u8]) -> &'a [u8] {
    if other.is_empty() {
        return other;
    }
    let from = rng.below(other.len());
    let n = rng
        .small_len(other.len() - from)
        .max(rng.below(other.len() - from + 1));
    &other[from..from + n.min(other.len() - from)]
}

fn splice_insert(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let chunk = chunk_of(rng, other);
    let at = rng.below(data.len() + 1);
    data.splice(at..at, chunk.iter().copied());
}

fn splice_overwrite(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let chunk = chunk_of(rng, other);
    let at = rng.below(data.len() + 1);
    let end = (at + chunk.len()).min(data.len());
    data.splice(at..end, chunk.iter().copied());
}

fn crossover(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let cut = rng.below(data.len() + 1);
    let from = rng.below(other.len() + 1);
    data.truncate(cut);
    data.extend_from_slice(&other[from..]);
}

/// Replaces a run of ASCII digits (or inserts at a random place) with an interesting number.
fn replace_number(rng: &mut Rng, data: &mut Vec<u8>) {
    let num = INTERESTING_NUMBERS[rng.below(INTERESTING_NUMBERS.len())];
    let digits: Vec<usize> = (0..data.len())
        .filter(|&i| data[i].is_ascii_digit())
        .collect();
    if digits.is_empty() {
        let at = rng.below(data.len() + 1);
        data.splice(at..at, num.iter().copied());
        return;
    }
    let start = digits[rng.below(digits.len())];
    let mut end = start;
    while end < data.len() && data[end].is_ascii_digit() {
        end += 1;
    }
    data.splice(start..end, num.iter().copied());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_respect_the_length_cap_and_are_deterministic() {
        let m = Mutator::new(&[b"FROM ", b"${"], 64, 1);
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let mut x = b"FROM alpine\nRUN echo ${A:-b}\n".to_vec();
        for _ in 0..10_000 {
            let y = m.mutate(&mut a, &x, b"other input");
            assert!(y.len() <= 64);
            assert_eq!(y, m.mutate(&mut b, &x, b"other input"));
            x = if y.is_empty() { b"x".to_vec() } else { y };
        }
    }

    #[test]
    fn block_mutations_handle_short_and_empty_inputs() {
        let m = Mutator::new(&[b"../"], 4096, 512);
        let mut rng = Rng::new(1);
        for len in [0, 1, 511, 512, 513, 1024] {
            for _ in 0..2_000 {
                let _ = m.mutate(&mut rng, &vec![0u8; len], &vec![1u8; len]);
            }
        }
    }
}
