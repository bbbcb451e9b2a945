//! cgroups: finding a writable cgroup memory controller, one
//! memory-limited cgroup per measurement, what it recorded, and how the
//! memory limit is applied ([`LimitMode`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::human;

/// Version of the cgroup memory controller used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// cgroup v1: `memory.limit_in_bytes`.
    V1,
    /// cgroup v2: `memory.max`.
    V2,
}

impl CgroupVersion {
    /// The file with the cgroup's current memory usage.
    pub(super) fn usage_file(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "memory.usage_in_bytes",
            CgroupVersion::V2 => "memory.current",
        }
    }

    /// The file the memory limit is written to.
    fn limit_file(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        }
    }
}

/// Where measurement cgroups are created.
#[derive(Debug, Clone)]
pub(super) struct CgroupParent {
    /// Controller version.
    pub(super) version: CgroupVersion,
    /// The directory the cgroups are created in.
    pub(super) dir: PathBuf,
}

/// The memory controller hierarchies of this system (v1 first), with the
/// directory of this process's own cgroup in each.
fn memory_hierarchies() -> Vec<(CgroupVersion, PathBuf, PathBuf)> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let own_path = |v1: bool| -> Option<String> {
        own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let hit = if v1 {
                controllers.split(',').any(|c| c == "memory")
            } else {
                controllers.is_empty()
            };
            hit.then(|| path.trim_start_matches('/').to_string())
        })
    };
    let mut out = Vec::new();
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let [_, mount, kind, opts, ..] = f[..] else {
            continue;
        };
        let mount = PathBuf::from(mount);
        if kind == "cgroup" && opts.split(',').any(|o| o == "memory") {
            if let Some(p) = own_path(true) {
                out.push((CgroupVersion::V1, mount.clone(), mount.join(p)));
            }
        } else if kind == "cgroup2"
            && std::fs::read_to_string(mount.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        {
            if let Some(p) = own_path(false) {
                out.push((CgroupVersion::V2, mount.clone(), mount.join(p)));
            }
        }
    }
    out.sort_by_key(|(v, _, _)| *v == CgroupVersion::V2);
    out
}

/// A writable place for a memory-limited cgroup: inside this process's
/// own cgroup if possible (its accounting stays where it was), else at
/// the controller's root. Tested by creating and removing a cgroup with
/// the limit set. `Err` says why none is usable.
pub(super) fn find_cgroup_parent(name: &str, limit: u64) -> Result<CgroupParent, String> {
    let hierarchies = memory_hierarchies();
    if hierarchies.is_empty() {
        return Err("no cgroup memory controller is mounted".into());
    }
    let mut reasons = Vec::new();
    for (version, root, own) in hierarchies {
        let mut candidates = vec![own.clone()];
        if own != root {
            candidates.push(root);
        }
        for dir in candidates {
            if version == CgroupVersion::V2 {
                // A v2 child only gets the memory controller if its
                // parent delegates it.
                let delegated = std::fs::read_to_string(dir.join("cgroup.subtree_control"))
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
                if !delegated {
                    reasons.push(format!(
                        "{}: memory not in cgroup.subtree_control",
                        dir.display()
                    ));
                    continue;
                }
            }
            let parent = CgroupParent {
                version,
                dir: dir.clone(),
            };
            match Cgroup::create(&parent, name, limit) {
                Ok(probe) => match probe.remove() {
                    Ok(()) => return Ok(parent),
                    Err(e) => reasons.push(format!("{}: {e}", dir.display())),
                },
                Err(e) => reasons.push(format!("{}: {e}", dir.display())),
            }
        }
    }
    Err(reasons.join("; "))
}

/// One memory-limited cgroup, removed when dropped.
#[derive(Debug)]
pub(super) struct Cgroup {
    /// Controller version.
    pub(super) version: CgroupVersion,
    /// The cgroup's directory.
    pub(super) dir: PathBuf,
    removed: bool,
}

/// What a cgroup recorded about a measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupStats {
    /// The cgroup's directory.
    pub path: String,
    /// Controller version (`v1` / `v2`).
    pub version: String,
    /// The limit, bytes.
    pub limit_bytes: u64,
    /// Peak memory usage (v1 `memory.max_usage_in_bytes`, v2
    /// `memory.peak`), bytes.
    pub max_usage_bytes: Option<u64>,
    /// Times usage hit the limit (v1 `memory.failcnt`, v2 `max` in
    /// `memory.events`).
    pub failcnt: Option<u64>,
    /// Processes the OOM killer killed in it.
    pub oom_kills: Option<u64>,
}

/// The number a file holds.
pub(super) fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The number after `key` in a file of `key value` lines.
pub(super) fn read_key(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

impl Cgroup {
    /// Create cgroup `name` under `parent` with memory limit `limit`.
    pub(super) fn create(parent: &CgroupParent, name: &str, limit: u64) -> std::io::Result<Cgroup> {
        let dir = parent.dir.join(name);
        if dir.exists() {
            // Left by an earlier run with this pid; empty unless in use.
            std::fs::remove_dir(&dir)?;
        }
        std::fs::create_dir(&dir)?;
        let cgroup = Cgroup {
            version: parent.version,
            dir,
            removed: false,
        };
        std::fs::write(
            cgroup.dir.join(parent.version.limit_file()),
            limit.to_string(),
        )?;
        if parent.version == CgroupVersion::V2 {
            // Without swap a v2 group could swap its anonymous pages out
            // instead of dropping cache; where the file exists, forbid it.
            let _ = std::fs::write(cgroup.dir.join("memory.swap.max"), "0");
        }
        Ok(cgroup)
    }

    /// Move process `pid` into this cgroup.
    pub(super) fn add(&self, pid: u32) -> std::io::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// What the cgroup recorded so far.
    pub(super) fn stats(&self, limit: u64) -> CgroupStats {
        let (max_usage, failcnt, oom_kills) = match self.version {
            CgroupVersion::V1 => (
                read_u64(&self.dir.join("memory.max_usage_in_bytes")),
                read_u64(&self.dir.join("memory.failcnt")),
                read_key(&self.dir.join("memory.oom_control"), "oom_kill"),
            ),
            CgroupVersion::V2 => (
                read_u64(&self.dir.join("memory.peak")),
                read_key(&self.dir.join("memory.events"), "max"),
                read_key(&self.dir.join("memory.events"), "oom_kill"),
            ),
        };
        CgroupStats {
            path: self.dir.display().to_string(),
            version: format!("{:?}", self.version).to_lowercase(),
            limit_bytes: limit,
            max_usage_bytes: max_usage,
            failcnt,
            oom_kills,
        }
    }

    /// Remove the (empty) cgroup; a process that just exited may take a
    /// moment to leave it.
    pub(super) fn remove(mut self) -> std::io::Result<()> {
        self.removed = true;
        remove_cgroup_dir(&self.dir)
    }
}

fn remove_cgroup_dir(dir: &Path) -> std::io::Result<()> {
    let mut last = None;
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("cgroup busy")))
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if !self.removed {
            let _ = remove_cgroup_dir(&self.dir);
        }
    }
}

/// How the memory limit is applied.
#[derive(Debug, Clone)]
pub(super) enum LimitMode {
    /// No limit asked for.
    None,
    /// A cgroup per measurement.
    Cgroup { parent: CgroupParent, limit: u64 },
    /// A limit was asked for but no cgroup can enforce it.
    EvictOnly { limit: u64, reason: String },
}

impl LimitMode {
    /// The mode in words, as printed and reported.
    pub(super) fn describe(&self) -> String {
        match self {
            LimitMode::None => "no memory limit (--memory-limit none); the page cache of the segment files is \
                 evicted before each measurement"
                .into(),
            LimitMode::Cgroup { parent, limit } => format!(
                "memory limit {} enforced by a cgroup {} memory controller (a fresh cgroup under {} per \
                 measurement, the worker moved into it before it opens the segment); the page cache \
                 of the segment files is evicted before each measurement",
                human((*limit).into()),
                format!("{:?}", parent.version).to_lowercase(),
                parent.dir.display()
            ),
            LimitMode::EvictOnly { limit, reason } => format!(
                "WARNING: the memory limit {} is NOT enforced: no usable cgroup memory controller ({reason}); \
                 the page cache of the segment files is only evicted before each measurement",
                human((*limit).into())
            ),
        }
    }

    /// The mode's name in `report.json`.
    pub(super) fn key(&self) -> &'static str {
        match self {
            LimitMode::None => "none",
            LimitMode::Cgroup { parent, .. } => match parent.version {
                CgroupVersion::V1 => "cgroup_v1",
                CgroupVersion::V2 => "cgroup_v2",
            },
            LimitMode::EvictOnly { .. } => "evict_only",
        }
    }
}
