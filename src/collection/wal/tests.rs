//! WAL tests: round trips across files, a model under random appends,
//! reopens and truncations, torn tails, damage in the middle, concurrent
//! group commit.

use proptest::prelude::*;

use super::*;

fn opts(capacity: u64, durability: Durability) -> WalOptions {
    WalOptions {
        file_capacity: capacity,
        durability,
    }
}

fn entry(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

#[test]
fn appends_survive_reopen_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, replay) = Wal::open(dir.path(), opts(256, Durability::Fsync)).unwrap();
    assert!(replay.is_empty());
    for i in 1..=40u64 {
        assert_eq!(wal.append(&entry(i, (i % 50) as usize)).unwrap(), i);
    }
    assert!(wal.file_count().unwrap() > 3, "small capacity rolls over");
    drop(wal);
    let (wal, replay) = Wal::open(dir.path(), opts(256, Durability::Fsync)).unwrap();
    let want: Vec<(u64, Vec<u8>)> = (1..=40).map(|i| (i, entry(i, (i % 50) as usize))).collect();
    assert_eq!(replay, want);
    assert_eq!(wal.append(b"next").unwrap(), 41);
    // An entry larger than the capacity gets a file of its own.
    assert_eq!(wal.append(&entry(42, 1000)).unwrap(), 42);
    drop(wal);
    let (_, replay) = Wal::open(dir.path(), opts(256, Durability::None)).unwrap();
    assert_eq!(replay.len(), 42);
    assert_eq!(replay[41].1, entry(42, 1000));
}

#[test]
fn a_torn_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts(4096, Durability::None)).unwrap();
    for i in 1..=3u64 {
        wal.append(&entry(i, 21)).unwrap();
    }
    drop(wal);
    let path = dir.path().join(file_name(1));
    let full = std::fs::read(&path).unwrap();
    let end = (log_file::HEADER_LEN + 3 * log_file::entry_len(21)) as usize;
    let last = end - log_file::entry_len(21) as usize;
    assert!(full[end..].iter().all(|b| *b == 0), "preallocated zeros");
    for cut in last..end {
        // A write cut short: the last entry's bytes up to `cut`, then
        // zeros (as preallocated) or garbage.
        for garbage in [0u8, 0x5a] {
            let mut torn = full.clone();
            torn[cut..end].fill(garbage);
            if torn == full {
                continue; // only the zero padding was "cut"
            }
            std::fs::write(&path, &torn).unwrap();
            let (wal, replay) = Wal::open(dir.path(), opts(4096, Durability::None)).unwrap();
            assert_eq!(replay.len(), 2, "cut at {cut}");
            let after = std::fs::read(&path).unwrap();
            assert!(after[last..].iter().all(|b| *b == 0), "tail zeroed");
            assert_eq!(wal.append(&entry(3, 21)).unwrap(), 3);
            drop(wal);
            let (_, replay) = Wal::open(dir.path(), opts(4096, Durability::None)).unwrap();
            assert_eq!(replay.len(), 3);
            assert_eq!(std::fs::read(&path).unwrap(), full);
        }
    }
}

#[test]
fn damage_in_the_middle_or_a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts(200, Durability::None)).unwrap();
    for i in 1..=20u64 {
        wal.append(&entry(i, 40)).unwrap();
    }
    assert!(wal.file_count().unwrap() >= 4);
    drop(wal);
    let path = dir.path().join(file_name(1));
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[8 + 20] ^= 0x01; // inside the first entry's data
    std::fs::write(&path, &bad).unwrap();
    let e = Wal::open(dir.path(), WalOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains(&file_name(1)) && e.to_string().contains("byte 8"),
        "{e}"
    );
    std::fs::write(&path, &good).unwrap();
    // A torn tail in a file that is not the last one is damage too.
    let (_, files) = inspect(dir.path()).unwrap();
    let mut torn = good.clone();
    let end = files[0].valid_len as usize;
    torn[end - 3..end].fill(0);
    std::fs::write(&path, &torn).unwrap();
    assert!(Wal::open(dir.path(), WalOptions::default()).is_err());
    std::fs::write(&path, &good).unwrap();
    // A file missing from the middle: a gap in the sequence numbers.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("wal-"))
        .collect();
    names.sort();
    std::fs::remove_file(dir.path().join(&names[1])).unwrap();
    let e = Wal::open(dir.path(), WalOptions::default()).unwrap_err();
    assert!(e.to_string().contains(&names[2]), "{e}");
}

#[test]
fn truncation_forgets_old_entries_even_if_deletion_was_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts(200, Durability::None)).unwrap();
    for i in 1..=30u64 {
        wal.append(&entry(i, 40)).unwrap();
    }
    let before = wal.file_count().unwrap();
    wal.truncate_before(17).unwrap();
    assert!(wal.file_count().unwrap() < before);
    assert_eq!(wal.first_needed().unwrap(), 17);
    drop(wal);
    let (wal, replay) = Wal::open(dir.path(), opts(200, Durability::None)).unwrap();
    assert_eq!(replay.first().unwrap().0, 17);
    assert_eq!(replay.last().unwrap().0, 30);
    // Everything truncated, then more appends: sequence numbers go on.
    wal.truncate_before(31).unwrap();
    assert_eq!(wal.append(b"x").unwrap(), 31);
    drop(wal);
    let (_, replay) = Wal::open(dir.path(), opts(200, Durability::None)).unwrap();
    assert_eq!(replay, vec![(31, b"x".to_vec())]);

    // first.json written, files not yet deleted (a crash in between).
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts(1 << 20, Durability::None)).unwrap();
    for i in 1..=5u64 {
        wal.append(&entry(i, 8)).unwrap();
    }
    drop(wal);
    write_sealed(
        &dir.path().join(FIRST_FILE),
        &serde_json::to_vec(&FirstNeeded { first: 4 }).unwrap(),
    )
    .unwrap();
    let (wal, replay) = Wal::open(dir.path(), opts(1 << 20, Durability::None)).unwrap();
    assert_eq!(replay.iter().map(|e| e.0).collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(wal.append(b"y").unwrap(), 6);
}

#[test]
fn group_commit_serves_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts(4096, Durability::GroupCommit)).unwrap();
    let wal = std::sync::Arc::new(wal);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| wal.append(&entry(t * 1000 + i, 30)).unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    assert_eq!(wal.sync.lock().unwrap().synced, 200);
    drop(wal);
    let (_, replay) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(replay.len(), 200);
}

#[derive(Debug, Clone)]
enum Step {
    Append(usize),
    Reopen,
    Truncate(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0usize..300).prop_map(Step::Append),
        1 => Just(Step::Reopen),
        1 => (0u64..40).prop_map(Step::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Random appends, reopens and truncations against a model: the log
    /// always returns exactly the entries from the first needed one on.
    #[test]
    fn matches_a_model(steps in proptest::collection::vec(step(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(512, Durability::None);
        let (mut wal, _) = Wal::open(dir.path(), o).unwrap();
        let mut model: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut next = 1u64;
        let mut first = 1u64;
        for s in steps {
            match s {
                Step::Append(len) => {
                    let data = entry(next, len);
                    prop_assert_eq!(wal.append(&data).unwrap(), next);
                    model.push((next, data));
                    next += 1;
                }
                Step::Reopen => {
                    drop(wal);
                    let (w, replay) = Wal::open(dir.path(), o).unwrap();
                    wal = w;
                    let want: Vec<_> = model.iter().filter(|e| e.0 >= first).cloned().collect();
                    prop_assert_eq!(replay, want);
                }
                Step::Truncate(t) => {
                    wal.truncate_before(t).unwrap();
                    first = first.max(t.min(next));
                }
            }
        }
        drop(wal);
        let (_, replay) = Wal::open(dir.path(), o).unwrap();
        let want: Vec<_> = model.iter().filter(|e| e.0 >= first).cloned().collect();
        prop_assert_eq!(replay, want);
    }
}

#[test]
fn files_are_preallocated_and_leftover_preparations_removed() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = 4096;
    let (wal, _) = Wal::open(dir.path(), opts(capacity, Durability::Fsync)).unwrap();
    for i in 1..=300u64 {
        wal.append(&entry(i, 40)).unwrap();
    }
    assert!(wal.file_count().unwrap() >= 3);
    drop(wal);
    // Every log file has the full capacity; a crash mid-preparation
    // leaves a `.prealloc` file, which the next open removes.
    std::fs::write(dir.path().join("next-0000beef.prealloc"), b"VW").unwrap();
    let (wal, replay) = Wal::open(dir.path(), opts(capacity, Durability::Fsync)).unwrap();
    assert_eq!(replay.len(), 300);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(PREPARED_SUFFIX)),
        "{names:?}"
    );
    for n in names.iter().filter(|n| n.starts_with("wal-")) {
        let len = std::fs::metadata(dir.path().join(n)).unwrap().len();
        assert_eq!(len, capacity, "{n}");
    }
    // Appends continue in the preallocated space and survive reopen.
    assert_eq!(wal.append(&entry(301, 40)).unwrap(), 301);
    drop(wal);
    let (_, replay) = Wal::open(dir.path(), opts(capacity, Durability::Fsync)).unwrap();
    assert_eq!(replay.len(), 301);
    assert_eq!(replay[300].1, entry(301, 40));
}
