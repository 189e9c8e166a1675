//! Consumer-group offsets: one JSON file per group, replaced atomically and durably.
//!
//! `dir/groups/<group>.json` holds `{"version":1,"offsets":{"<topic>":{"<partition>":next}}}`.
//! A commit writes `<group>.json.tmp`, fsyncs it, renames it over the file and fsyncs the
//! directory, so a crash leaves either the old or the new file.

use super::segment::sync_dir;
use crate::{LogError, Result, TopicName};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Checks a consumer group name: 1-128 of `[A-Za-z0-9_.-]`.
pub fn validate_group_name(group: &str) -> Result<()> {
    let ok = !group.is_empty()
        && group.len() <= 128
        && group.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(LogError::InvalidGroupName(group.to_owned()))
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct GroupFile {
    version: u32,
    offsets: BTreeMap<String, BTreeMap<u32, u64>>,
}

/// Committed offsets of all groups, cached in memory and loaded lazily.
#[derive(Debug)]
pub(crate) struct Groups {
    dir: PathBuf,
    groups: Mutex<HashMap<String, Arc<Mutex<Option<GroupFile>>>>>,
}

impl Groups {
    pub(crate) fn new(dir: PathBuf) -> Groups {
        Groups { dir, groups: Mutex::new(HashMap::new()) }
    }

    fn entry(&self, group: &str) -> Arc<Mutex<Option<GroupFile>>> {
        self.groups.lock().entry(group.to_owned()).or_default().clone()
    }

    fn path(&self, group: &str) -> PathBuf {
        self.dir.join(format!("{group}.json"))
    }

    fn load(&self, group: &str, slot: &mut Option<GroupFile>) -> Result<()> {
        if slot.is_some() {
            return Ok(());
        }
        let path = self.path(group);
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LogError::Corrupt {
                path: path.display().to_string(),
                reason: format!("bad consumer group file: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => GroupFile { version: 1, offsets: BTreeMap::new() },
            Err(e) => return Err(e.into()),
        };
        *slot = Some(file);
        Ok(())
    }

    pub(crate) fn commit(&self, group: &str, topic: &TopicName, partition: u32, next_offset: u64) -> Result<()> {
        validate_group_name(group)?;
        let entry = self.entry(group);
        let mut slot = entry.lock();
        self.load(group, &mut slot)?;
        let mut updated = slot.clone().unwrap_or_default();
        updated.version = 1;
        updated.offsets.entry(topic.as_str().to_owned()).or_default().insert(partition, next_offset);
        let json = serde_json::to_vec(&updated).map_err(std::io::Error::other)?;
        write_durably(&self.dir, &self.path(group), &json)?;
        *slot = Some(updated);
        Ok(())
    }

    pub(crate) fn committed(&self, group: &str, topic: &TopicName, partition: u32) -> Result<Option<u64>> {
        validate_group_name(group)?;
        let entry = self.entry(group);
        let mut slot = entry.lock();
        self.load(group, &mut slot)?;
        Ok(slot.as_ref().and_then(|f| f.offsets.get(topic.as_str())).and_then(|p| p.get(&partition)).copied())
    }
}

/// Replaces `path` with `contents`: temp file, fsync, rename, fsync of `dir`.
pub(crate) fn write_durably(dir: &Path, path: &Path, contents: &[u8]) -> Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)?;
    Ok(())
}
