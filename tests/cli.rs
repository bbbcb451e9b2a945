//! End-to-end tests of the `vecseg` binary.

use std::process::Command;

fn vecseg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vecseg"))
}

const REPORT_KEYS: &[&str] = &[
    "name",
    "description",
    "load_points_per_sec",
    "load_mb_per_sec",
    "flush_ms",
    "open_ms",
    "disk_bytes",
    "code_bytes",
    "resident_mb",
    "random_get_us",
    "scan_gb_per_sec",
    "search_qps",
    "search_p50_ms",
    "search_p99_ms",
    "filtered_search_qps",
    "indexed_filtered_search_qps",
    "indexed_filtered_p50_ms",
    "index_bytes",
    "posting_bytes_per_pair",
    "id_lookup_ns",
    "cold_random_get_us",
    "cold_batch_get_us",
    "recall_at_k",
    "tenant_pages_ratio",
    "ef_sweep",
];

#[test]
fn compare_runs_every_configuration_on_a_tiny_dataset() {
    let out = tempfile::tempdir().unwrap();
    let result = vecseg()
        .args([
            "compare",
            "--quiet",
            "--points",
            "400",
            "--dim",
            "8",
            "--queries",
            "6",
            "--top",
            "5",
        ])
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "compare failed: {stderr}");
    let table = String::from_utf8_lossy(&result.stdout);
    assert!(
        table.lines().next().unwrap().starts_with("config"),
        "{table}"
    );

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["dataset"]["points"], 400);
    assert_eq!(json["dataset"]["dim"], 8);
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    let configs = json["configs"].as_array().unwrap();
    let names: Vec<&str> = configs
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vecseg::cli::compare::configs::ALL);
    for c in configs {
        for key in REPORT_KEYS {
            assert!(c.get(*key).is_some(), "{} lacks {key}", c["name"]);
        }
        // Every configuration measures tenant-filtered search again with
        // an index on the tenant key.
        assert!(
            c["indexed_filtered_search_qps"].as_f64().unwrap() > 0.0,
            "{}",
            c["name"]
        );
        let sweep = c["oversampling"].as_array().unwrap();
        let ef_sweep = c["ef_sweep"].as_array().unwrap();
        if !ef_sweep.is_empty() {
            // HNSW configurations: a recall point per ef; the widest beam
            // finds (nearly) the whole top-k of 400 points.
            assert_eq!(ef_sweep.len(), 5, "{}", c["name"]);
            let best = ef_sweep[4]["recall_at_k"].as_f64().unwrap();
            assert!(best >= 0.95, "{}: {ef_sweep:?}", c["name"]);
        } else if sweep.is_empty() {
            // Exact configurations: recall must be perfect.
            assert_eq!(c["recall_at_k"].as_f64().unwrap(), 1.0, "{}", c["name"]);
        } else {
            // Quantized ones: approximate; rescoring 8× the candidates
            // finds most of the top-k and never fewer than 1×.
            let at = |i: usize| sweep[i]["recall_at_k"].as_f64().unwrap();
            let best = at(sweep.len() - 1);
            assert!(best >= 0.85 && best >= at(0), "{}: {sweep:?}", c["name"]);
        }
        assert!(table.contains(c["name"].as_str().unwrap()));
        // The tenant key's locality: for the immutable mmap configurations
        // (built in id order, so at least the minimum), absent otherwise.
        let name = c["name"].as_str().unwrap();
        if name == "mmap" || name.starts_with("mmap+") {
            assert!(c["tenant_pages_ratio"].as_f64().unwrap() >= 1.0, "{name}");
        } else {
            assert!(c["tenant_pages_ratio"].is_null(), "{name}");
        }
    }
    assert!(table.contains("tenant pages/min"), "{table}");
    assert!(
        !out.path().join("segments").exists(),
        "segment directories are cleaned up"
    );
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("chart-search_qps"));
    assert!(html.contains("recall@k vs QPS"), "the oversampling chart");
    assert!(!html.contains("http://") || html.contains("xmlns=\"http://www.w3.org/2000/svg\""));
}

#[test]
fn compare_rejects_bad_arguments_with_usage_errors() {
    for args in [
        &["compare", "--points", "abc"][..],
        &["compare", "--distance", "hamming"],
        &["compare", "--no-such-flag"],
        &["frobnicate"],
    ] {
        let r = vecseg().args(args).output().unwrap();
        assert_eq!(r.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(
            stderr.contains("Usage") || stderr.contains("error"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let out = tempfile::tempdir().unwrap();
    let r = vecseg()
        .args(["compare", "--quiet", "--configs", "nope"])
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("unknown configuration") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// Write `n` vectors of `dim` distinct positive values as an `.fvecs` file.
fn write_fvecs(path: &std::path::Path, n: usize, dim: usize) {
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend((dim as i32).to_le_bytes());
        for k in 0..dim {
            bytes.extend(((i * dim + k) as f32 * 0.01 + 0.1).to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn compare_reads_fvecs_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("v.fvecs");
    write_fvecs(&data, 50, 4);
    let r = vecseg()
        .args([
            "compare",
            "--quiet",
            "--configs",
            "memory",
            "--queries",
            "3",
            "--top",
            "3",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/report.json")).unwrap())
            .unwrap();
    assert_eq!(json["dataset"]["points"], 50);
    assert_eq!(json["dataset"]["dim"], 4);
}

#[test]
fn inspect_describes_a_segment_and_rejects_non_segments() {
    use vecseg::kinds;
    use vecseg::{Distance, PointId};
    let dir = tempfile::tempdir().unwrap();
    let seg_dir = dir.path().join("seg");
    let mut seg = kinds::create_chunked_segment::<f32>(&seg_dir, 4, Distance::Dot).unwrap();
    for i in 0..25u64 {
        let payload = serde_json::json!({ "tenant": format!("t{}", i % 5) });
        seg.upsert(
            i + 1,
            PointId::Num(i),
            &[1.0, 2.0, 3.0, i as f32],
            payload.as_object().unwrap(),
        )
        .unwrap();
    }
    seg.delete(100, PointId::Num(3)).unwrap();
    seg.create_field_index(vecseg::FieldSchema::new("tenant", vecseg::FieldType::Keyword).tenant())
        .unwrap();
    seg.flush().unwrap();
    drop(seg);
    let r = vecseg().arg("inspect").arg(&seg_dir).output().unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(out.contains("version     100"), "{out}");
    assert!(out.contains("24 live, 25 slots, 1 deleted"), "{out}");
    assert!(out.contains("ChunkedVectorStorage"), "{out}");
    assert!(
        out.contains("index       \"tenant\" keyword (tenant): 5 values, 24 points"),
        "{out}"
    );
    assert!(
        out.contains("segment.json") && out.contains("vectors/"),
        "{out}"
    );

    // Not a segment: a clear error, exit code 1, no panic.
    let r = vecseg().arg("inspect").arg(dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        err.contains("not a vecseg segment or collection directory"),
        "{err}"
    );
    // Corrupted state file: the error names it.
    std::fs::write(seg_dir.join("segment.json"), b"{ broken").unwrap();
    let r = vecseg().arg("inspect").arg(&seg_dir).output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        err.contains("segment.json") && !err.contains("panicked"),
        "{err}"
    );
}

/// Run `vecseg cold-reads --quiet ARGS --dir DIR --json DIR/cold.json`
/// and return the JSON report.
fn cold_reads(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let json = dir.join("cold.json");
    let r = vecseg()
        .args(["cold-reads", "--quiet"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains("mmap_page_faults"), "{stdout}");
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

#[test]
fn cold_reads_measures_every_read_path() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--points", "3000", "--dim", "16", "--batch", "300", "--rounds", "2",
    ];
    let report = cold_reads(dir.path(), &args);
    assert_eq!(report["batch"], 300);
    let methods = report["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "io_uring",
            "io_uring_one_request_per_vector",
            "pread",
            "mmap_page_faults",
            "mmap_page_faults_default_readahead"
        ]
    );
    for m in methods {
        assert!(m["median_batch_ms"].as_f64().unwrap() > 0.0, "{m}");
        assert!(m["median_speedup_vs_page_faults"].as_f64().unwrap() > 0.0);
    }
    // 300 of 3000 vectors of 64 B: close neighbours share requests.
    let requests = |i: usize| methods[i]["requests_per_batch"].as_f64().unwrap();
    assert_eq!(requests(1), 300.0);
    assert!(requests(0) < 300.0 && requests(0) >= 1.0);
    assert_eq!(requests(0), requests(2));
    assert!(methods[3]["requests_per_batch"].is_null());
    // The scratch directory is gone; only the JSON report is left.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // Vectors from an .fvecs file: 500 × 8.
    let fvecs = dir.path().join("v.fvecs");
    write_fvecs(&fvecs, 500, 8);
    let data = fvecs.to_str().unwrap();
    let report = cold_reads(
        dir.path(),
        &["--batch", "50", "--rounds", "1", "--data", data],
    );
    assert_eq!(report["points"], 500);
    assert_eq!(report["dim"], 8);

    usage_error(
        &["cold-reads", "--quiet", "--batch", "0"],
        &["--batch 0", "between 1 and"],
    );
}

/// Run `vecseg ARGS` expecting a usage error: exit code 2, every needle in
/// stderr, no panic.
fn usage_error(args: &[&str], needles: &[&str]) {
    let r = vecseg().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} lacks {needle:?}"
        );
    }
}

/// An `.npy` v1 float32 file of shape `(rows, dim)` holding `rows * dim` ones.
fn write_npy(path: &std::path::Path, rows: usize, dim: usize) {
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    for _ in 0..rows * dim {
        bytes.extend(1.0f32.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn compare_rejects_sizes_beyond_its_limits_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    write_npy(&dir.path().join("empty.npy"), 0, 16);
    write_npy(&dir.path().join("flat.npy"), 4, 0);
    write_npy(&dir.path().join("small.npy"), 5, 3);
    std::fs::write(dir.path().join("empty.fvecs"), b"").unwrap();
    std::fs::write(dir.path().join("zero.fvecs"), [0u8; 8]).unwrap();
    let (empty_npy, flat_npy, small_npy) = (file("empty.npy"), file("flat.npy"), file("small.npy"));
    let (empty_fvecs, zero_fvecs) = (file("empty.fvecs"), file("zero.fvecs"));
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--top", "1000000000"],
            &["--top 1000000000", "--points 100000"],
        ),
        (
            &["--dim", "1000000000", "--points", "1"],
            &["--dim 1000000000", "65536"],
        ),
        (
            &["--points", "1000000000000"],
            &["--points 1000000000000", "4294967295"],
        ),
        (&["--points", "0"], &["--points 0"]),
        (&["--dim", "0"], &["--dim 0", "65536"]),
        (&["--queries", "0"], &["--queries 0", "1000000"]),
        (
            &["--queries", "1000000000"],
            &["--queries 1000000000", "1000000"],
        ),
        (&["--tenants", "0"], &["--tenants"]),
        (
            &["--points", "10", "--tenants", "11", "--top", "1"],
            &["--tenants 11", "--points 10"],
        ),
        // Within the fixed limits, but more memory than any machine has.
        (
            &["--points", "4000000000", "--dim", "65536"],
            &["needs about", "available"],
        ),
        (&["--data", &empty_npy], &[&empty_npy, "holds no vectors"]),
        (&["--data", &flat_npy], &[&flat_npy, "dimension 0", "65536"]),
        (
            &["--data", &empty_fvecs],
            &[&empty_fvecs, "holds no vectors"],
        ),
        (&["--data", &zero_fvecs], &[&zero_fvecs, "dimension 0"]),
        (
            &["--data", &small_npy, "--top", "6", "--tenants", "1"],
            &["--top 6", "5 points read from"],
        ),
    ];
    for (extra, needles) in cases {
        let mut args = vec![
            "compare",
            "--quiet",
            "--configs",
            "memory",
            "--out",
            out_arg,
        ];
        args.extend_from_slice(extra);
        usage_error(&args, needles);
        assert!(!out.exists(), "{args:?} created {}", out.display());
    }
}

#[test]
fn cold_reads_rejects_sizes_beyond_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.npy");
    write_npy(&empty, 0, 16);
    let empty = empty.to_str().unwrap();
    let scratch = dir.path().to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--points", "1000000000000"],
            &["--points 1000000000000", "4294967295"],
        ),
        (
            &["--dim", "1000000000", "--points", "1"],
            &["--dim 1000000000", "65536"],
        ),
        (
            &["--rounds", "18446744073709551615"],
            &["--rounds 18446744073709551615", "100000"],
        ),
        (
            &["--batch", "1000000000000"],
            &["--batch 1000000000000", "16777216"],
        ),
        (
            &["--max-gap-kib", "18446744073709551615"],
            &["--max-gap-kib", "1 GiB"],
        ),
        (&["--data", empty], &[empty, "holds no vectors"]),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["cold-reads", "--quiet", "--dir", scratch];
        args.extend_from_slice(extra);
        usage_error(&args, needles);
    }
    // Nothing was written but the input file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn compare_takes_queries_and_ground_truth_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let write_vecs = |name: &str, rows: &[Vec<u32>]| {
        let mut bytes = Vec::new();
        for r in rows {
            bytes.extend_from_slice(&(r.len() as u32).to_le_bytes());
            for x in r {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    // Points e_i·(i+1) on 4 axes, queries on the axes: the exact top-1 of
    // query q is the point on axis q with the largest norm (dot).
    let points: Vec<Vec<u32>> = (0..40)
        .map(|i| {
            let mut v = [0f32; 4];
            v[i % 4] = 1.0 + i as f32;
            v.iter().map(|x| x.to_bits()).collect()
        })
        .collect();
    let queries: Vec<Vec<u32>> = (0..4)
        .map(|q| {
            let mut v = [0f32; 4];
            v[q] = 1.0;
            v.iter().map(|x| x.to_bits()).collect()
        })
        .collect();
    let base = write_vecs("base.fvecs", &points);
    let query_file = write_vecs("queries.fvecs", &queries);
    let right: Vec<Vec<u32>> = (0..4).map(|q| vec![36 + q as u32, 32 + q as u32]).collect();
    let wrong: Vec<Vec<u32>> = (0..4).map(|q| vec![q as u32, 4 + q as u32]).collect();
    let run = |truth: &std::path::Path| {
        let out = dir.path().join("out");
        let r = vecseg()
            .args([
                "compare",
                "--quiet",
                "--configs",
                "memory",
                "--distance",
                "dot",
                "--top",
                "1",
            ])
            .arg("--data")
            .arg(&base)
            .arg("--query-data")
            .arg(&query_file)
            .arg("--ground-truth")
            .arg(truth)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        assert_eq!(json["dataset"]["queries"], 4);
        json["configs"][0]["recall_at_k"].as_f64().unwrap()
    };
    assert_eq!(run(&write_vecs("gt.ivecs", &right)), 1.0);
    assert_eq!(
        run(&write_vecs("bad_gt.ivecs", &wrong)),
        0.0,
        "recall is checked against the file"
    );
    // A file naming points that do not exist is a clear error.
    let out_of_range = write_vecs("oor.ivecs", &[vec![99], vec![1], vec![2], vec![3]]);
    let r = vecseg()
        .args(["compare", "--quiet", "--configs", "memory", "--top", "1"])
        .arg("--data")
        .arg(&base)
        .arg("--query-data")
        .arg(&query_file)
        .arg("--ground-truth")
        .arg(&out_of_range)
        .arg("--out")
        .arg(dir.path().join("out2"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("point 99"), "{stderr}");
}

#[test]
fn quantize_writes_a_layer_inspect_shows_it_and_bad_requests_are_errors() {
    use vecseg::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let mut chunked =
        vecseg::kinds::create_chunked_segment::<f32>(&dir.path().join("src"), 8, Distance::Dot)
            .unwrap();
    for i in 0..300u64 {
        let v: Vec<f32> = (0..8).map(|d| ((i * 7 + d) as f32).sin()).collect();
        chunked
            .upsert(1, PointId::Num(i), &v, &Payload::new())
            .unwrap();
    }
    chunked.flush().unwrap();
    let seg = dir.path().join("seg");
    let opts = vecseg::mmap::MmapVectorOptions::default();
    drop(vecseg::migrate::build_mmap(&chunked, &seg, &opts, &mut |_| {}).unwrap());
    let run = |args: &[&str], target: &std::path::Path| {
        vecseg()
            .arg("--quiet")
            .arg("quantize")
            .arg(target)
            .args(args)
            .output()
            .unwrap()
    };
    let r = run(&["--codec", "bq2"], &seg);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(
        stdout.contains("quantized 300 vectors of 8 with binary-2"),
        "{stdout}"
    );
    let report = vecseg().arg("inspect").arg(&seg).output().unwrap();
    let report = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.contains(&format!(
            "quantized   binary-2 codes (meta format {})",
            vecseg::quantized::meta::FORMAT_VERSION
        )),
        "{report}"
    );
    assert!(
        report.contains("column groups of 32 up to slot 288"),
        "{report}"
    );
    let q = vecseg::kinds::open_quantized_mmap_segment::<vecseg::quantized::Binary2>(&seg, &opts)
        .unwrap();
    assert_eq!(q.point_count(), 300);
    drop(q);
    // Int4 scalar codes of another copy: column groups too.
    let seg4 = dir.path().join("seg4");
    drop(vecseg::migrate::build_mmap(&chunked, &seg4, &opts, &mut |_| {}).unwrap());
    let r = run(&["--codec", "sq4"], &seg4);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains("with scalar-u4"), "{stdout}");
    let report = vecseg().arg("inspect").arg(&seg4).output().unwrap();
    let report = String::from_utf8_lossy(&report.stdout);
    assert!(report.contains("quantized   scalar-u4 codes"), "{report}");
    assert!(
        report.contains("column groups of 32 up to slot 288"),
        "{report}"
    );
    // A sub-vector size that does not divide the dimension, and a
    // segment that is not an mmap one: clear errors, exit code 1.
    let r = run(&["--codec", "pq", "--sub-dim", "3"], &seg);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sub") && !stderr.contains("panicked"),
        "{stderr}"
    );
    let r = run(&["--codec", "sq8"], &dir.path().join("src"));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not an mmap segment"), "{stderr}");
}

/// `vecseg tenants` with tiny sizes and no memory limit: the table has a
/// row per hot set, and the report's locality figures show the
/// defragmented segment at the minimum and the other one scattered.
#[test]
fn tenants_compares_defragmented_and_scattered_segments() {
    let dir = tempfile::tempdir().unwrap();
    let report_dir = dir.path().join("report");
    let started = std::time::Instant::now();
    let r = vecseg()
        .args([
            "--quiet",
            "tenants",
            "--points",
            "3000",
            "--dim",
            "64",
            "--tenants",
            "30",
            "--memory-limit",
            "none",
            "--measure-secs",
            "0.1",
            "--warmup-min-secs",
            "0",
            "--warmup-max-secs",
            "0.2",
        ])
        .arg("--dir")
        .arg(dir.path())
        .arg("--report-dir")
        .arg(&report_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "tenants failed: {stderr}\n{stdout}");
    assert!(stdout.contains("no memory limit"), "{stdout}");
    let header = stdout
        .lines()
        .position(|l| l.contains("RPS not defrag") && l.contains("RPS defrag"))
        .unwrap_or_else(|| panic!("no table: {stdout}"));
    let rows: Vec<&str> = stdout.lines().skip(header + 1).take(5).collect();
    for (row, hot) in rows.iter().zip(["2.5%", "12.5%", "25%", "50%", "100%"]) {
        assert!(row.trim_start().starts_with(hot), "{row:?} in {stdout}");
        assert!(row.contains('x'), "a ratio: {row:?}");
    }

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["parameters"]["points"], 3000);
    assert_eq!(json["parameters"]["memory_limit_mode"], "none");
    let table = json["rows"].as_array().unwrap();
    assert_eq!(table.len(), 5);
    assert_eq!(
        table
            .iter()
            .map(|r| r["hot_tenants"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 4, 8, 15, 30]
    );
    for row in table {
        for layout in ["not_defragmented", "defragmented"] {
            let cell = &row[layout];
            assert!(cell["rps"].as_f64().unwrap() > 0.0, "{row}");
            assert_eq!(cell["plan"], "indexed", "{row}");
            assert_eq!(cell["hits_per_request"].as_f64().unwrap(), 10.0, "{row}");
        }
        assert!(row["ratio"].as_f64().unwrap() > 0.0);
    }
    let builds = json["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2);
    for b in builds {
        assert!(b["build_mb_per_sec"].as_f64().unwrap() > 0.0, "{b}");
    }
    assert_eq!(
        builds[1]["tenant_runs"], 30,
        "the defragmented build records its runs"
    );
    assert!(builds[0]["tenant_runs"].is_null());
    let locality = |layout: &str| -> &serde_json::Value {
        json["locality"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["layout"] == layout)
            .unwrap()
    };
    let defrag = locality("defragmented");
    let scattered = locality("not_defragmented");
    let tenants = defrag["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 30);
    for t in tenants {
        let ratio = t["pages"].as_f64().unwrap() / t["min_pages"].as_f64().unwrap();
        assert!(ratio <= 1.2, "defragmented tenant {t}");
    }
    assert!(
        scattered["median_ratio"].as_f64().unwrap() > 2.0 * defrag["max_ratio"].as_f64().unwrap(),
        "scattered {} vs defragmented {}",
        scattered["median_ratio"],
        defrag["max_ratio"]
    );
    assert!(scattered["pages"].as_u64().unwrap() > defrag["pages"].as_u64().unwrap());
    let html = std::fs::read_to_string(report_dir.join("report.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("RPS defragmented"),
        "{html}"
    );
    // The scratch directory (both segments) is removed afterwards.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("report")]);
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn tenants_rejects_bad_arguments_with_usage_errors() {
    usage_error(
        &["tenants", "--memory-limit", "12Q"],
        &["--memory-limit", "256M"],
    );
    usage_error(
        &["tenants", "--memory-limit", "1M"],
        &["--memory-limit", "at least 32 MiB"],
    );
    usage_error(
        &["tenants", "--points", "5", "--tenants", "10"],
        &["--tenants 10", "number of points (5)"],
    );
    usage_error(&["tenants", "--hot", "0,50"], &["--hot 0", "percentage"]);
    usage_error(&["tenants", "--hot", "150"], &["--hot 150"]);
    usage_error(&["tenants", "--threads", "0"], &["--threads 0"]);
    usage_error(&["tenants", "--dim", "0"], &["--dim 0"]);
    usage_error(
        &[
            "tenants",
            "--warmup-min-secs",
            "5",
            "--warmup-max-secs",
            "1",
        ],
        &["--warmup-max-secs 1"],
    );
    usage_error(
        &[
            "tenants",
            "--points",
            "100",
            "--tenants",
            "10",
            "--dir",
            "/nonexistent/vecseg",
        ],
        &["--dir /nonexistent/vecseg", "not a directory"],
    );
    usage_error(
        &["tenants", "--points", "1000000000000"],
        &["--points 1000000000000"],
    );
}

/// A segment built ordered by tenant with the optimizer's builder.
fn build_tenant_segment(dir: &std::path::Path, defragment: bool, tenants: u64, per: u64) {
    use vecseg::collection::optimizer::{build_segment, BuildOptions};
    use vecseg::{Distance, FieldSchema, FieldType, Payload, PointId, Record};
    let dim = 128;
    let points: Vec<Record<f32>> = (0..tenants * per)
        .map(|i| {
            let mut payload = Payload::new();
            // Tenant independent of the id: consecutive ids alternate.
            payload.insert("tenant".into(), format!("t{:02}", i % tenants).into());
            Record {
                id: PointId::Num(i),
                version: 1,
                vector: (0..dim).map(|k| ((i + k) as f32).sin()).collect(),
                payload,
            }
        })
        .collect();
    let mut schema = FieldSchema::new("tenant", FieldType::Keyword);
    schema.is_tenant = defragment;
    let options = BuildOptions {
        dim: dim as usize,
        distance: Distance::Dot,
        indexes: vec![schema],
        vector_options: Default::default(),
        hnsw: None,
    };
    drop(build_segment(points, dir, &options, &mut |_| {}).unwrap());
}

#[test]
fn inspect_prints_tenant_locality() {
    let dir = tempfile::tempdir().unwrap();
    let defrag = dir.path().join("defrag");
    // 25 tenants of 40 vectors of 512 B: 5 pages each at best.
    build_tenant_segment(&defrag, true, 25, 40);
    let r = vecseg().arg("inspect").arg(&defrag).output().unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        out.contains("tenants     key \"tenant\", tenant table of 25 runs recorded"),
        "{out}"
    );
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("\"t"))
        .collect();
    assert_eq!(rows.len(), 20, "the 20 largest tenants: {out}");
    for row in &rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1..], ["40", "5", "5", "1.00x"], "{row}");
    }
    assert!(out.contains("... 5 smaller tenants not listed"), "{out}");
    assert!(
        out.contains(
            "all 25 tenants: 1000 points, 125 pages, 125 min pages; ratio median 1.00x, max 1.00x"
        ),
        "{out}"
    );
    assert!(out.contains("id map      records numeric ids, "), "{out}");
    // The existing lines are still there, before the tenants.
    assert!(out.find("index       \"tenant\"").unwrap() < out.find("tenants     key").unwrap());

    // Without a tenant key (points at their ids' hash slots): no tenant
    // table, so no locality unless asked for.
    let by_id = dir.path().join("by-id");
    build_tenant_segment(&by_id, false, 25, 40);
    let r = vecseg().arg("inspect").arg(&by_id).output().unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success());
    assert!(!out.contains("tenants     key"), "{out}");
    assert!(
        out.contains("id map      slot-ordered numeric ids, "),
        "{out}"
    );
    let r = vecseg()
        .arg("inspect")
        .arg(&by_id)
        .args(["--tenant-key", "tenant"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success());
    assert!(
        out.contains("tenants     key \"tenant\"; locality"),
        "{out}"
    );
    // 40 points scattered over the 125 pages: about 34 pages each (at
    // most 40, one per point), against 5 when defragmented.
    let all = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("all 25 tenants: 1000 points, "))
        .unwrap_or_else(|| panic!("{out}"));
    let pages: u64 = all.split(' ').next().unwrap().parse().unwrap();
    assert!((600..=1000).contains(&pages), "{out}");
    assert!(
        all.contains(" pages, 125 min pages; ratio median "),
        "{out}"
    );
    // A key no point has.
    let r = vecseg()
        .arg("inspect")
        .arg(&by_id)
        .args(["--tenant-key", "nope"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        out.contains("no live point has a value for \"nope\""),
        "{out}"
    );
}

/// `vecseg tenants` with a memory limit: each worker runs in a fresh
/// cgroup holding the limit (where this system has a writable memory
/// controller, e.g. as root), removed afterwards; without a cgroup the
/// output says the limit is not enforced.
#[test]
fn tenants_limits_workers_with_a_cgroup_or_says_it_cannot() {
    let run = |no_cgroup: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = vecseg();
        cmd.args([
            "--quiet",
            "tenants",
            "--points",
            "2000",
            "--dim",
            "16",
            "--tenants",
            "8",
            "--hot",
            "25,100",
            "--threads",
            "2",
            "--memory-limit",
            "64M",
            "--measure-secs",
            "0.1",
            "--warmup-min-secs",
            "0",
            "--warmup-max-secs",
            "0.1",
        ])
        .arg("--dir")
        .arg(dir.path())
        .arg("--report-dir")
        .arg(dir.path().join("report"));
        if no_cgroup {
            cmd.env("VECSEG_TENANTS_NO_CGROUP", "1");
        } else {
            cmd.env_remove("VECSEG_TENANTS_NO_CGROUP");
        }
        let r = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&r.stdout).to_string();
        assert!(
            r.status.success(),
            "{}\n{stdout}",
            String::from_utf8_lossy(&r.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("report").join("report.json")).unwrap(),
        )
        .unwrap();
        (stdout, json)
    };

    let (stdout, json) = run(true);
    assert!(
        stdout.contains("WARNING: the memory limit 64.0 MiB is NOT enforced"),
        "{stdout}"
    );
    assert_eq!(json["parameters"]["memory_limit_mode"], "evict_only");
    assert!(json["rows"][0]["defragmented"]["cgroup"].is_null());

    let (stdout, json) = run(false);
    let mode = json["parameters"]["memory_limit_mode"].as_str().unwrap();
    if mode == "evict_only" {
        // No usable memory controller here (not root, or none mounted).
        assert!(stdout.contains("is NOT enforced"), "{stdout}");
        return;
    }
    assert!(mode.starts_with("cgroup_v"), "{mode}");
    assert!(stdout.contains("enforced by a cgroup"), "{stdout}");
    for row in json["rows"].as_array().unwrap() {
        for layout in ["not_defragmented", "defragmented"] {
            let cell = &row[layout];
            let cgroup = &cell["cgroup"];
            assert_eq!(cgroup["limit_bytes"], 64u64 << 20, "{cell}");
            assert!(cgroup["max_usage_bytes"].as_u64().unwrap() > 0, "{cell}");
            let path = cgroup["path"].as_str().unwrap();
            let name = std::path::Path::new(path).file_name().unwrap();
            assert!(name.to_str().unwrap().starts_with("vecseg-tenants-"));
            // The worker saw itself in that cgroup; it is gone now.
            assert!(
                cell["own_cgroup"]
                    .as_str()
                    .unwrap()
                    .ends_with(name.to_str().unwrap()),
                "{cell}"
            );
            assert!(!std::path::Path::new(path).exists(), "{path} left behind");
        }
    }
}
