//! `vecseg inspect <dir> [--verify]`: what a segment directory holds (with
//! `--verify`, also a full read pass, [`Segment::verify`]), or what a
//! collection directory holds (manifest, segments, WAL), read without
//! opening, locking or repairing anything.

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use vecseg_mmap::{FilePrefix, MmapVectorOptions};
use vecseg_traits::{
    IdMapperRead, PayloadStorageRead, Result, StorageError, VectorElement, VectorStorageRead,
};

use crate::kinds::{self, SegmentKind};
use crate::segment::SegmentState;
use crate::Segment;

/// Arguments of `vecseg inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// The segment directory (the one holding `segment.json`).
    pub segment_dir: PathBuf,
    /// Also read every point and check every checksum and invariant the
    /// segment has (exits non-zero on the first problem).
    #[arg(long)]
    pub verify: bool,
    /// Print the locality of every value of this payload key (tenant):
    /// distinct 4 KiB pages of vector data against the fewest possible.
    /// Without it, printed for the key of a recorded tenant table.
    #[arg(long, value_name = "KEY")]
    pub tenant_key: Option<String>,
}

/// Run `vecseg inspect`: print backends, counts, versions and files.
pub fn run(args: &InspectArgs) -> Result<(), Box<dyn Error>> {
    print!(
        "{}",
        inspect_with(&args.segment_dir, args.verify, args.tenant_key.as_deref())?
    );
    Ok(())
}

/// The report `vecseg inspect` prints (`verify`: with the full read pass).
pub fn inspect(dir: &Path, verify: bool) -> Result<String, Box<dyn Error>> {
    inspect_with(dir, verify, None)
}

/// [`inspect`], with the tenant locality of payload key `tenant_key`
/// (without it: of the key of the segment's tenant table, if it has one).
pub fn inspect_with(
    dir: &Path,
    verify: bool,
    tenant_key: Option<&str>,
) -> Result<String, Box<dyn Error>> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()).into());
    }
    if dir
        .join(crate::collection::manifest::MANIFEST_FILE)
        .exists()
    {
        if let Some(key) = tenant_key {
            return Err(crate::cli::limits::UsageError(format!(
                "--tenant-key {key}: {} is a collection; pass one of its segment directories",
                dir.display()
            ))
            .into());
        }
        return inspect_collection(dir);
    }
    if !dir.join(crate::segment::STATE_FILE).exists() {
        return Err(format!(
            "{} is not a vecseg segment or collection directory (no {})",
            dir.display(),
            crate::segment::STATE_FILE
        )
        .into());
    }
    let state = SegmentState::read(dir)?;
    let mut out = String::new();
    let _ = writeln!(out, "segment     {}", dir.display());
    let _ = writeln!(out, "format      segment.json v{}", state.format_version);
    let _ = writeln!(out, "version     {}", state.version);
    let _ = writeln!(out, "dim         {}", state.dim);
    let _ = writeln!(out, "distance    {}", state.distance.name());
    let _ = writeln!(
        out,
        "backends    {} / {} / {}",
        state.backends.vectors, state.backends.payloads, state.backends.ids
    );
    let (kind, element) = kinds::detect_kind(&state).ok_or_else(|| {
        StorageError::corrupted(
            dir.join(crate::segment::STATE_FILE),
            "unknown backend combination",
        )
    })?;
    let counts = match (kind, element) {
        (kind, "f32") => counts::<f32>(dir, kind, verify, tenant_key)?,
        (kind, _) => counts::<u8>(dir, kind, verify, tenant_key)?,
    };
    out.push_str(&counts);
    let ids_dir = kinds::SegmentLayout::new(dir).ids();
    if state.backends.ids == "MmapIdMapper" {
        let sizes = vecseg_mmap::MmapIdMapper::open(&ids_dir)?.sizes();
        let layout = match sizes.num_layout {
            vecseg_mmap::id_map::NumLayout::Records => "records",
            vecseg_mmap::id_map::NumLayout::SlotOrdered => "slot-ordered",
        };
        let _ = writeln!(
            out,
            "id map      {layout} numeric ids, {:.2} B/point two-way, hash {:.2} bits/key",
            sizes.mapping_bytes_per_id, sizes.phf_bits_per_key
        );
    }
    let quantized = dir.join(kinds::QUANTIZED_DIR);
    if quantized.join(vecseg_quantized::meta::META_FILE).exists() {
        let m = vecseg_quantized::meta::summary(&quantized)?;
        let raw = (m.dim * 4).max(1);
        let _ = writeln!(
            out,
            "quantized   {} codes (meta format {}), {} B per vector ({:.3}x of {} B raw), {} B of parameters, {}",
            m.codec,
            m.version,
            m.code_len,
            m.code_len as f64 / raw as f64,
            raw,
            m.params_len,
            if m.columns_end > 0 {
                format!("column groups of 32 up to slot {}", m.columns_end)
            } else {
                "one row per code".to_string()
            }
        );
    }
    let _ = writeln!(out, "files");
    for (path, size) in files(dir) {
        let rel = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        let _ = writeln!(out, "  {rel:<40} {size:>12} B  {}", file_format(&path));
    }
    Ok(out)
}

/// The report for a collection directory, read without opening (or
/// locking, or repairing) anything: manifest, each segment's
/// `segment.json`, the WAL files.
fn inspect_collection(dir: &Path) -> Result<String, Box<dyn Error>> {
    use crate::collection::manifest::Manifest;
    let m = Manifest::read(dir)?;
    let mut out = String::new();
    let _ = writeln!(out, "collection  {}", dir.display());
    let _ = writeln!(out, "dim         {}", m.dim);
    let _ = writeln!(out, "distance    {}", m.distance.name());
    let _ = writeln!(out, "segments");
    for s in &m.segments {
        let seg_dir = dir.join(crate::collection::SEGMENTS_DIR).join(&s.name);
        let state = SegmentState::read(&seg_dir)?;
        let _ = writeln!(
            out,
            "  {:<12} {:<8} persisted version {:>10}  offsets {:>10}{}",
            s.name,
            s.kind,
            state.version,
            state.id_total,
            if s.name == m.appendable {
                "  (appendable)"
            } else {
                ""
            }
        );
    }
    let wal_dir = dir.join(crate::collection::WAL_DIR);
    let (first, files) = crate::collection::wal::inspect(&wal_dir)?;
    let entries: u64 = files.iter().map(|f| f.entries).sum();
    let next = files.last().map_or(first, |f| f.first + f.entries);
    let _ = writeln!(
        out,
        "wal         {} file(s), {} bytes used of {} preallocated, entries {}..{} ({} still needed), durability {:?}",
        files.len(),
        files.iter().map(|f| f.valid_len).sum::<u64>(),
        files.iter().map(|f| f.file_len).sum::<u64>(),
        files.first().map_or(first, |f| f.first),
        next,
        next.saturating_sub(first).min(entries),
        m.wal_durability
    );
    for f in &files {
        let torn = if f.dirty_end > f.valid_len {
            format!(
                "  torn tail of {} B (zeroed at the next open)",
                f.dirty_end - f.valid_len
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {:<28} {:>8} entries {:>12} B used{torn}",
            f.name, f.entries, f.valid_len
        );
    }
    Ok(out)
}

fn counts<T: VectorElement>(
    dir: &Path,
    kind: SegmentKind,
    verify: bool,
    tenant_key: Option<&str>,
) -> Result<String, StorageError> {
    match kind {
        #[cfg(feature = "rocksdb")]
        SegmentKind::Rocks => summary(
            &kinds::open_rocks_segment::<T>(dir, &Default::default())?,
            verify,
            tenant_key,
        ),
        #[cfg(not(feature = "rocksdb"))]
        SegmentKind::Rocks => Err(kinds::rocksdb_feature_missing(
            "inspecting a RocksDB segment",
        )),
        SegmentKind::Chunked => {
            summary(&kinds::open_chunked_segment::<T>(dir)?, verify, tenant_key)
        }
        SegmentKind::Mmap => summary(
            &kinds::open_mmap_segment::<T>(dir, &MmapVectorOptions::default())?,
            verify,
            tenant_key,
        ),
    }
}

/// Tenants listed one by one (the largest by points); the rest are
/// only counted in the summary line.
pub const TENANTS_LISTED: usize = 20;

/// The locality lines: the [`TENANTS_LISTED`] largest tenants of `key`,
/// then totals, median and largest ratio over all of them.
fn tenant_lines<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead>(
    s: &Segment<V, P, I>,
    key: &str,
    out: &mut String,
) -> Result<()> {
    let mut rows = s.tenant_locality(key)?;
    let recorded = match s.tenants() {
        Some(t) if t.key == key => format!(", tenant table of {} runs recorded", t.ranges.len()),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "tenants     key {key:?}{recorded}; locality = distinct 4 KiB pages of vector data / the fewest possible"
    );
    if rows.is_empty() {
        let _ = writeln!(out, "  no live point has a value for {key:?}");
        return Ok(());
    }
    let all = crate::cli::tenants::summarize(&rows);
    rows.sort_by(|a, b| {
        b.points
            .cmp(&a.points)
            .then_with(|| a.value.to_string().cmp(&b.value.to_string()))
    });
    let _ = writeln!(
        out,
        "  {:<28} {:>10} {:>10} {:>10} {:>8}",
        "tenant", "points", "pages", "min pages", "ratio"
    );
    for r in rows.iter().take(TENANTS_LISTED) {
        let _ = writeln!(
            out,
            "  {:<28} {:>10} {:>10} {:>10} {:>7.2}x",
            r.value.to_string(),
            r.points,
            r.pages,
            r.min_pages,
            r.ratio()
        );
    }
    if rows.len() > TENANTS_LISTED {
        let _ = writeln!(
            out,
            "  ... {} smaller tenants not listed",
            rows.len() - TENANTS_LISTED
        );
    }
    let _ = writeln!(
        out,
        "  all {} tenants: {} points, {} pages, {} min pages; ratio median {:.2}x, max {:.2}x",
        all.tenants, all.points, all.pages, all.min_pages, all.median_ratio, all.max_ratio
    );
    Ok(())
}

fn summary<V: VectorStorageRead, P: PayloadStorageRead, I: IdMapperRead>(
    s: &Segment<V, P, I>,
    verify: bool,
    tenant_key: Option<&str>,
) -> Result<String> {
    let mut out = String::new();
    if verify {
        let r = s.verify()?;
        let _ = writeln!(
            out,
            "verified    {} points, {} vector slots, {} payloads: every check passed",
            r.points, r.slots, r.payloads
        );
    }
    let ids = s.ids();
    let (mut min, mut max) = (u64::MAX, 0);
    for entry in ids.iter_from(None) {
        let (_, o) = entry?;
        if let Some(v) = ids.version(o)? {
            (min, max) = (min.min(v), max.max(v));
        }
    }
    let _ = writeln!(
        out,
        "points      {} live, {} slots, {} deleted vectors",
        ids.available_count(),
        ids.total_count(),
        s.vectors().deleted_count()
    );
    let _ = writeln!(out, "payloads    {} non-empty", s.payloads().count());
    if min <= max {
        let _ = writeln!(out, "point vers. {min} ..= {max}");
    }
    for field in s.payload_index().fields() {
        let schema = field.schema();
        let stats = field.stats();
        let _ = writeln!(
            out,
            "index       {:?} {}{}: {} values, {} points, {} pairs, {} skipped, {:.2} B/pair postings, {} B in RAM, {} B on disk",
            schema.key,
            schema.field_type.name(),
            if schema.is_tenant { " (tenant)" } else { "" },
            stats.values,
            stats.points,
            stats.pairs,
            stats.skipped,
            stats.posting_bytes as f64 / stats.pairs.max(1) as f64,
            stats.ram_bytes,
            stats.disk_bytes
        );
    }
    let key = tenant_key.or_else(|| s.tenants().map(|t| t.key.as_str()));
    if let Some(key) = key {
        tenant_lines(s, key, &mut out)?;
    }
    Ok(out)
}

/// Every regular file under `dir`, sorted, with its size.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(m) => out.push((p, m.len())),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// `MAGIC vN` for vecseg binary files, `json` for JSON, empty otherwise.
fn file_format(path: &Path) -> String {
    if path.extension().is_some_and(|e| e == "json") {
        return "json".into();
    }
    let mut head = [0u8; std::mem::size_of::<FilePrefix>()];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok();
    if !ok {
        return String::new();
    }
    let prefix: FilePrefix = bytemuck::pod_read_unaligned(&head);
    if prefix
        .magic
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
    {
        format!(
            "{} v{}",
            String::from_utf8_lossy(&prefix.magic),
            prefix.format_version
        )
    } else {
        String::new()
    }
}
