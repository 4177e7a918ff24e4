//! What encryption at rest costs per operation: sealing and opening a value with a data key
//! (XChaCha20-Poly1305) from a short message to a file chunk, and unwrapping a data key with the
//! KEK (what the store does on a key-cache miss). Run with
//! `cargo bench -p rampart-crypto --bench envelope`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rampart_crypto::{Aad, DataKey, Kek, SymmetricKey};

/// Plaintext sizes measured, with the name each is reported under: a short chat line, a long
/// one, a large paste, the largest message body (16,000 characters of up to 4 bytes each) and
/// one file chunk.
const SIZES: [(&str, usize); 5] =
    [("64 B", 64), ("1 KiB", 1024), ("16 KiB", 16 * 1024), ("64 KiB", 64 * 1024), ("1 MiB", 1024 * 1024)];

/// Short runs so that the whole bench takes about a minute on two cores; the spread criterion
/// reports says whether that was enough.
const WARM_UP: Duration = Duration::from_secs(1);
const MEASUREMENT: Duration = Duration::from_secs(2);

/// AAD shaped like the store's for a message body: purpose, channel id, message id (UUID text)
/// and epoch.
fn body_aad() -> Aad {
    Aad::new(
        "rampart message body v1",
        &[b"6f1c2a7e-0b7d-4f6a-9c43-5d2e8b1a9f00", b"0d9e7c11-3a52-4b8e-8f61-2c4a7b9e1d35", &1_i64.to_be_bytes()],
    )
}

/// AAD shaped like the store's for a wrapped data key: purpose, channel id and epoch.
fn data_key_aad() -> Aad {
    Aad::new("rampart data key v1", &[b"6f1c2a7e-0b7d-4f6a-9c43-5d2e8b1a9f00", &1_i64.to_be_bytes()])
}

fn seal(c: &mut Criterion) {
    let key = SymmetricKey::generate();
    let aad = body_aad();
    let mut group = c.benchmark_group("seal");
    group.warm_up_time(WARM_UP).measurement_time(MEASUREMENT);
    for (name, size) in SIZES {
        let plaintext = vec![0x61_u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &plaintext, |b, plaintext| {
            b.iter(|| key.seal(black_box(&aad), black_box(plaintext)));
        });
    }
    group.finish();
}

fn open(c: &mut Criterion) {
    let key = SymmetricKey::generate();
    let aad = body_aad();
    let mut group = c.benchmark_group("open");
    group.warm_up_time(WARM_UP).measurement_time(MEASUREMENT);
    for (name, size) in SIZES {
        let sealed = key.seal(&aad, &vec![0x61_u8; size]);
        // A benchmark of a failing open would measure nothing useful: check once, outside the loop.
        assert_eq!(key.open(&aad, &sealed).map(|plain| plain.len()), Ok(size), "the sealed value opens");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &sealed, |b, sealed| {
            b.iter(|| key.open(black_box(&aad), black_box(sealed)));
        });
    }
    group.finish();
}

fn kek(c: &mut Criterion) {
    let kek = Kek::generate(1);
    let binding = data_key_aad();
    let data_key = DataKey::generate();
    let wrapped = kek.wrap(&data_key, &binding);
    assert!(kek.unwrap(&wrapped, &binding).is_ok(), "the wrapped data key unwraps");
    let mut group = c.benchmark_group("kek");
    group.warm_up_time(WARM_UP).measurement_time(MEASUREMENT);
    group.bench_function("wrap data key", |b| b.iter(|| kek.wrap(black_box(&data_key), black_box(&binding))));
    group.bench_function("unwrap data key", |b| b.iter(|| kek.unwrap(black_box(&wrapped), black_box(&binding))));
    group.finish();
}

criterion_group!(benches, seal, open, kek);
criterion_main!(benches);
