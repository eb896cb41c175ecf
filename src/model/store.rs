//! Finding cw weights by id, so that a file keeps decoding after the default weights change.
//!
//! A `.lic` file records the id of the weights that coded it (format-spec §5). A build embeds
//! one set, the default; files made with any other shipped set are decoded with the weights
//! file of that id, looked up in the weights folders, in this order:
//!
//! 1. folders added by the program ([`WeightsStore::add_dir`]; `lic --weights-dir`);
//! 2. the folders of the `LIC_WEIGHTS_PATH` environment variable (a path list, `:`-separated
//!    on Unix);
//! 3. `$XDG_DATA_HOME/lic/weights` (default `~/.local/share/lic/weights`);
//! 4. the `weights/archive` folder of the source tree this build was made from, when it
//!    exists (`scripts/archive-weights.sh` fills it from the repository's history).
//!
//! A weights file is found under the name `cw-ID.safetensors` or `ID.safetensors` (ID the 16
//! hex digits) and must hash to that id. What lic has shipped is listed in
//! `weights/shipped.csv`, compiled in, so that a missing set is reported with the commit that
//! shipped it. Older sets are not kept in the working tree (each is ~11 MB): every one is
//! `weights/cw.safetensors` at its commit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use super::weights::{id_hex, weights_id, CwWeights, WeightsError, EMBEDDED_CW};

/// The table of shipped weights: `id,date,commit,channels,decodable` per line.
const SHIPPED: &str = include_str!("../../weights/shipped.csv");

/// The source tree's archive of shipped weights, as it was when this build was made.
const SOURCE_ARCHIVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/weights/archive");

/// One row of `weights/shipped.csv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShippedWeights {
    /// 16 hex digits.
    pub id: String,
    /// The day it shipped (YYYY-MM-DD).
    pub date: String,
    /// The commit of the lic repository that shipped it.
    pub commit: String,
    /// Latent channels of the model.
    pub channels: usize,
    /// Whether this version of lic can run it (the model shape has not changed since), so
    /// that its file lives in `weights/archive/`.
    pub decodable: bool,
}

/// Every set of cw weights lic has shipped, oldest first.
pub fn shipped() -> Vec<ShippedWeights> {
    SHIPPED
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            Some(ShippedWeights {
                id: f.first()?.to_string(),
                date: f.get(1)?.to_string(),
                commit: f.get(2)?.to_string(),
                channels: f.get(3)?.parse().ok()?,
                decodable: *f.get(4)? == "yes",
            })
        })
        .collect()
}

/// Weights folders and the weights loaded from them (each set parsed once).
pub struct WeightsStore {
    dirs: RwLock<Vec<PathBuf>>,
    loaded: Mutex<HashMap<[u8; 8], Arc<CwWeights>>>,
}

impl Default for WeightsStore {
    fn default() -> Self {
        Self::from_env()
    }
}

impl WeightsStore {
    /// A store searching exactly `dirs` (and the embedded weights).
    pub fn with_dirs(dirs: Vec<PathBuf>) -> Self {
        Self {
            dirs: RwLock::new(dirs),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The standard search path: `LIC_WEIGHTS_PATH`, the user's data folder, the source
    /// tree's archive (see the module documentation).
    pub fn from_env() -> Self {
        let mut dirs: Vec<PathBuf> = std::env::var_os("LIC_WEIGHTS_PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")));
        if let Some(d) = data {
            dirs.push(d.join("lic").join("weights"));
        }
        dirs.push(PathBuf::from(SOURCE_ARCHIVE));
        Self::with_dirs(dirs)
    }

    /// The process-wide store of [`crate::decode`], the `image` integration and the C ABI,
    /// made by [`from_env`](Self::from_env) on first use.
    pub fn global() -> &'static WeightsStore {
        static GLOBAL: OnceLock<WeightsStore> = OnceLock::new();
        GLOBAL.get_or_init(Self::from_env)
    }

    /// Searches `dir` before the folders already known.
    pub fn add_dir(&self, dir: impl Into<PathBuf>) {
        let mut d = self.dirs.write().unwrap_or_else(|e| e.into_inner());
        d.insert(0, dir.into());
    }

    /// The folders searched, in order.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The cw weights with this id: the embedded ones or a file of a weights folder.
    pub fn cw(&self, id: &[u8; 8]) -> Result<Arc<CwWeights>, WeightsError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = loaded.get(id) {
            return Ok(w.clone());
        }
        let w = Arc::new(self.load(id)?);
        loaded.insert(*id, w.clone());
        Ok(w)
    }

    fn load(&self, id: &[u8; 8]) -> Result<CwWeights, WeightsError> {
        if !EMBEDDED_CW.is_empty() && weights_id(EMBEDDED_CW) == *id {
            return CwWeights::from_bytes(EMBEDDED_CW);
        }
        let hex = id_hex(id);
        let dirs = self.dirs();
        for dir in &dirs {
            for name in [
                format!("cw-{hex}.safetensors"),
                format!("{hex}.safetensors"),
            ] {
                let path = dir.join(name);
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                if weights_id(&bytes) != *id {
                    return Err(WeightsError::Mismatch {
                        path,
                        id: hex,
                        actual: id_hex(&weights_id(&bytes)),
                    });
                }
                return CwWeights::from_bytes(&bytes).map_err(|e| WeightsError::File {
                    path,
                    source: Box::new(e),
                });
            }
        }
        let shipped = shipped().into_iter().find(|s| s.id == hex).map(Box::new);
        Err(WeightsError::NotFound {
            id: hex,
            searched: dirs,
            shipped,
        })
    }
}

/// The sentence of [`WeightsError::NotFound`] on where the weights come from.
pub(crate) fn provenance(id: &str, shipped: &Option<Box<ShippedWeights>>) -> String {
    match shipped {
        Some(s) if s.decodable => format!(
            "{id} shipped with lic commit {} ({}): in a clone of the lic repository, \
             scripts/archive-weights.sh writes it to weights/archive/, or \
             `git show {}:weights/cw.safetensors > cw-{id}.safetensors` and a folder named in \
             LIC_WEIGHTS_PATH",
            s.commit, s.date, s.commit
        ),
        Some(s) => format!(
            "{id} shipped with lic commit {} ({}), a model of {} latent channels that this \
             version cannot run: decode the file with a build of that commit",
            s.commit, s.date, s.channels
        ),
        None => format!(
            "{id} is not a set lic has shipped: find the weights file the file was made with \
             and put it, named cw-{id}.safetensors, in one of these folders"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_lists_the_embedded_weights_last() {
        let all = shipped();
        assert!(all.len() >= 2);
        let last = all.last().unwrap();
        assert_eq!(last.id, id_hex(&weights_id(EMBEDDED_CW)));
        assert!(last.decodable);
    }

    #[test]
    fn the_build_knows_whether_the_embedded_weights_have_a_shrink() {
        let w = CwWeights::embedded().unwrap();
        assert_eq!(
            super::super::weights::EMBEDDED_CW_PLAIN_ID == id_hex(&w.id),
            w.int.recon_shrink.is_empty()
        );
    }

    #[test]
    fn a_missing_set_is_reported_with_its_provenance() {
        let store = WeightsStore::with_dirs(vec![PathBuf::from("/nonexistent/lic-weights")]);
        let first = &shipped()[0];
        let mut id = [0u8; 8];
        for (k, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&first.id[2 * k..2 * k + 2], 16).unwrap();
        }
        let msg = store.cw(&id).err().unwrap().to_string();
        assert!(
            msg.contains(&first.id) && msg.contains(&first.commit),
            "{msg}"
        );
        assert!(msg.contains("/nonexistent/lic-weights"), "{msg}");
        let msg = store.cw(&[7; 8]).err().unwrap().to_string();
        assert!(msg.contains("not a set lic has shipped"), "{msg}");
    }
}
