//! Every file of a flushed segment of each kind, damaged every way: deleted,
//! truncated (to 0, to half, by one byte), a byte flipped in its header and
//! in its body, garbage appended. Each damaged copy is opened and read in
//! a child process (so a panic or a signal is caught, not fatal). The
//! outcome must be an error naming the file (or, for RocksDB's own files,
//! the database), or data equal to what was written. The only exceptions
//! are flips inside vector and payload bytes, which carry no checksum
//! (`docs/file-formats.md` lists them): there the data may differ, but the
//! outcome is still never a panic.
//!
//! Needs the `rocksdb` cargo feature (on by default): the same loops run
//! the RocksDB kind beside the chunked and mmap ones.
#![cfg(feature = "rocksdb")]

mod process;

use process::{copy_dir, self_exe};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vecseg::kinds::{
    create_rocks_segment, open_chunked_segment, open_mmap_segment, open_rocks_segment,
    SegmentLayout,
};
use vecseg::migrate::build_mmap;
use vecseg::{
    AppendableSegmentEntry, Distance, Payload, PointId, Result, Segment, SegmentEntry, Version,
};
use vecseg_chunked::{
    ChunkedIdMapper, ChunkedPayloadOptions, ChunkedPayloadStorage, ChunkedVectorOptions,
    ChunkedVectorStorage,
};
use vecseg_mmap::MmapVectorOptions;
use vecseg_rocksdb::RocksOptions;

const CHILD_ENV: &str = "VECSEG_SWEEP_CHILD";
const KIND_ENV: &str = "VECSEG_SWEEP_KIND";
const DIM: usize = 8;

/// A point's vector, payload and version.
type Point = (Vec<f32>, Payload, Version);
type Dump = BTreeMap<PointId, Point>;

fn dump(s: &dyn SegmentEntry<f32>) -> Result<Dump> {
    let mut out = Dump::new();
    for id in s.scroll(None, usize::MAX, None)? {
        let r = s
            .get(id)?
            .ok_or_else(|| vecseg::StorageError::NotFound(id))?;
        out.insert(id, (r.vector, r.payload, r.version));
    }
    let hits = s.search(&[1.0; DIM], out.len() + 10, None)?;
    if hits.len() != out.len() {
        return Err(vecseg::StorageError::InvalidArgument(format!(
            "search found {} points, scroll {}",
            hits.len(),
            out.len()
        )));
    }
    Ok(out)
}

/// `inspect --verify`'s full pass over the segment in `dir`.
fn open_verify(kind: &str, dir: &Path) -> Result<()> {
    match kind {
        "chunked" => open_chunked_segment::<f32>(dir)?.verify().map(drop),
        "mmap" => open_mmap_segment::<f32>(dir, &MmapVectorOptions::default())?
            .verify()
            .map(drop),
        _ => open_rocks_segment::<f32>(dir, &RocksOptions::default())?
            .verify()
            .map(drop),
    }
}

fn open_dump(kind: &str, dir: &Path) -> Result<Dump> {
    match kind {
        "chunked" => dump(&open_chunked_segment::<f32>(dir)?),
        "mmap" => dump(&open_mmap_segment::<f32>(
            dir,
            &MmapVectorOptions::default(),
        )?),
        _ => dump(&open_rocks_segment::<f32>(dir, &RocksOptions::default())?),
    }
}

/// Fill a fresh appendable segment: 300 points, payloads, changes, deletes.
fn fill<S: AppendableSegmentEntry<f32>>(s: &mut S) {
    let mut v: Version = 0;
    for i in 0..300u64 {
        v += 1;
        let vec: Vec<f32> = (0..DIM)
            .map(|k| (i * 3 + k as u64) as f32 - 100.0)
            .collect();
        let p = serde_json::json!({"i": i, "tenant": format!("t{}", i % 4), "tags": ["x", i]});
        s.upsert(v, PointId::Num(i * 7), &vec, p.as_object().unwrap())
            .unwrap();
    }
    for i in (0..300u64).step_by(9) {
        v += 1;
        s.delete(v, PointId::Num(i * 7)).unwrap();
    }
    for i in (1..300u64).step_by(11).filter(|i| i % 9 != 0) {
        v += 1;
        let p = serde_json::json!({"k": v});
        s.set_payload(v, PointId::Num(i * 7), p.as_object().unwrap())
            .unwrap();
    }
    s.flush().unwrap();
}

fn chunked_segment(
    dir: &Path,
) -> Segment<ChunkedVectorStorage, ChunkedPayloadStorage, ChunkedIdMapper> {
    let l = SegmentLayout::new(dir);
    std::fs::create_dir_all(dir).unwrap();
    let v = ChunkedVectorStorage::create(
        &l.vectors(),
        DIM,
        Distance::Dot,
        ChunkedVectorOptions::default().with_chunk_size(4096),
    )
    .unwrap();
    let p = ChunkedPayloadStorage::create(&l.payloads(), ChunkedPayloadOptions::small_for_tests())
        .unwrap();
    let i = ChunkedIdMapper::create(&l.ids()).unwrap();
    Segment::create(dir, v, p, i).unwrap()
}

/// Write a flushed segment of `kind` into `dir`; returns its contents.
fn make(kind: &str, dir: &Path) -> Dump {
    match kind {
        "chunked" => {
            let mut s = chunked_segment(dir);
            fill(&mut s);
        }
        "mmap" => {
            let src = dir.with_extension("src");
            let mut s = chunked_segment(&src);
            fill(&mut s);
            let mut m = build_mmap(&s, dir, &MmapVectorOptions::default(), &mut |_| {}).unwrap();
            SegmentEntry::flush(&mut m).unwrap();
            // Deletes and clears after the build, so the mutable parts of
            // the immutable files are covered too.
            for i in (2..300u64).step_by(13) {
                let _ = m.delete(10_000 + i, PointId::Num(i * 7)).unwrap();
            }
            m.clear_payload(20_000, PointId::Num(7 * 5)).unwrap();
            SegmentEntry::flush(&mut m).unwrap();
            std::fs::remove_dir_all(&src).unwrap();
        }
        _ => {
            let mut s =
                create_rocks_segment::<f32>(dir, DIM, Distance::Dot, &RocksOptions::default())
                    .unwrap();
            fill(&mut s);
            s.vectors().db().flush_memtables().unwrap();
        }
    }
    open_dump(kind, dir).unwrap()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// How a file is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Delete,
    TruncateToZero,
    TruncateToHalf,
    CutOneByte,
    FlipHeader,
    FlipBody,
    AppendGarbage,
}

const DAMAGES: [Damage; 7] = [
    Damage::Delete,
    Damage::TruncateToZero,
    Damage::TruncateToHalf,
    Damage::CutOneByte,
    Damage::FlipHeader,
    Damage::FlipBody,
    Damage::AppendGarbage,
];

fn damage(path: &Path, d: Damage) {
    let mut bytes = std::fs::read(path).unwrap();
    let len = bytes.len();
    match d {
        Damage::Delete => return std::fs::remove_file(path).unwrap(),
        Damage::TruncateToZero => bytes.clear(),
        Damage::TruncateToHalf => bytes.truncate(len / 2),
        Damage::CutOneByte => bytes.truncate(len.saturating_sub(1)),
        Damage::FlipHeader if len > 0 => bytes[9.min(len - 1)] ^= 0x5A,
        Damage::FlipBody if len > 0 => bytes[len / 2 + (len > 64) as usize * 3] ^= 0x5A,
        Damage::AppendGarbage => bytes.extend_from_slice(&[0xA5; 4096]),
        _ => {}
    }
    std::fs::write(path, bytes).unwrap();
}

/// Whether a flip in `rel` may read back differently, as
/// `docs/file-formats.md` lists: only vector and payload bytes carry no
/// checksum. Everything else (the id tables included) is an error or the
/// data that was written.
fn flip_allowed(kind: &str, rel: &str, d: Damage) -> bool {
    if !matches!(d, Damage::FlipBody) {
        return false;
    }
    let name = rel.rsplit('/').next().unwrap_or(rel);
    match kind {
        "chunked" => name.starts_with("chunk_") || name.starts_with("page_"),
        "mmap" => matches!(name, "matrix.dat" | "payload_data.dat"),
        _ => false,
    }
}

/// The child side: open the damaged copy, print the outcome.
#[test]
fn sweep_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let kind = std::env::var(KIND_ENV).unwrap();
    match open_dump(&kind, Path::new(&dir)) {
        Ok(d) => {
            let want: Vec<(PointId, Point)> = serde_json::from_str(
                &std::fs::read_to_string(Path::new(&dir).with_extension("want")).unwrap(),
            )
            .unwrap();
            let want: Dump = want.into_iter().collect();
            if d == want {
                println!("\nOUTCOME EQUAL");
            } else {
                // Unchecked bytes changed: does the full verify pass see it?
                let verified = open_verify(&kind, Path::new(&dir)).is_ok();
                println!(
                    "\nOUTCOME DIFFERENT {}",
                    if verified { "VERIFY_OK" } else { "VERIFY_ERR" }
                );
            }
        }
        Err(e) => {
            let verified = open_verify(&kind, Path::new(&dir)).is_ok();
            println!(
                "\nOUTCOME ERROR {}{e}",
                if verified { "VERIFY_OK " } else { "" }
            );
        }
    }
}

/// Damage every file of a `kind` segment every way; returns (cases, errors, equal).
fn sweep(kind: &str) -> (usize, usize, usize) {
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    let want = make(kind, &pristine);
    let mut failures = Vec::new();
    let (mut cases, mut errors, mut equal) = (0, 0, 0);
    let mut different = Vec::new();
    for file in files(&pristine) {
        let rel = file
            .strip_prefix(&pristine)
            .unwrap()
            .to_string_lossy()
            .to_string();
        if rel.ends_with("LOCK") || rel.contains("/LOG") {
            continue; // RocksDB's lock and info log are never read
        }
        for d in DAMAGES {
            cases += 1;
            let dir = root.path().join(format!("case{cases}"));
            copy_dir(&pristine, &dir);
            let listed: Vec<_> = want.iter().collect();
            std::fs::write(
                dir.with_extension("want"),
                serde_json::to_string(&listed).unwrap(),
            )
            .unwrap();
            damage(&dir.join(&rel), d);
            let out = Command::new(self_exe())
                .args(["--exact", "sweep_child", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, &dir)
                .env(KIND_ENV, kind)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let outcome = stdout
                .lines()
                .find_map(|l| l.split_once("OUTCOME ").map(|(_, rest)| rest))
                .map(str::to_string);
            let name = rel.rsplit('/').next().unwrap();
            let verdict = match outcome.as_deref() {
                None => Err(format!(
                    "child died: {:?}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .filter(|l| l.contains("panicked") || l.contains("error"))
                        .take(3)
                        .collect::<Vec<_>>()
                        .join("\n")
                )),
                Some("EQUAL") => {
                    equal += 1;
                    Ok(())
                }
                Some(diff) if diff.starts_with("DIFFERENT") && flip_allowed(kind, &rel, d) => {
                    different.push(format!("{rel} ({diff})"));
                    Ok(())
                }
                Some(diff) if diff.starts_with("DIFFERENT") => {
                    Err(format!("opened and returned different data ({diff})"))
                }
                Some(err) => {
                    errors += 1;
                    // The file, the database for RocksDB's own files, or the
                    // segment directory for a check across storages (a
                    // mapping to a deleted vector, lost offsets).
                    let names_it = err.contains(name)
                        || (kind == "rocksdb"
                            && rel.starts_with("rocksdb/")
                            && err.contains("rocksdb"))
                        || err.contains(&format!("{}: ", dir.display()));
                    if names_it {
                        Ok(())
                    } else {
                        Err(format!("error does not name the file: {err}"))
                    }
                }
            };
            if let Err(e) = verdict {
                failures.push(format!("{kind} {rel} {d:?}: {e}"));
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!(
        "{kind}: {cases} damaged copies, {errors} errors naming the file, {equal} equal, \
         {} different where allowed: {different:?}",
        different.len()
    );
    (cases, errors, equal)
}

#[test]
fn damaged_chunked_segments_error_or_read_back_intact() {
    sweep("chunked");
}

#[test]
fn damaged_mmap_segments_error_or_read_back_intact() {
    sweep("mmap");
}

#[test]
fn damaged_rocksdb_segments_error_or_read_back_intact() {
    sweep("rocksdb");
}
