//! The state of the stage being lowered: its config so far, the ENV/ARG scope expansion
//! sees (shared maps, updated once per instruction) and the ops made.

use crate::Op;
use rbuild_core::config::ImageConfig;
use rbuild_dockerfile::Instruction;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

/// The PATH BuildKit puts in a scratch image's config and in RUN steps without one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What lowering knows of the stage so far.
pub(crate) struct StageState {
    pub(crate) config: ImageConfig,
    /// Where each ENV name sits in `config.config.env`.
    pub(crate) env_index: BTreeMap<String, usize>,
    pub(crate) args: OrderedArgs,
    /// What expansion sees: ENV and ARGs as of the instruction being lowered.
    pub(crate) scope: Rc<Scope>,
    /// ENV and ARG changes of the instruction being lowered, for `scope` after it.
    pub(crate) pending: Vec<Change>,
    /// The stage's last CMD / ENTRYPOINT / HEALTHCHECK (for ENTRYPOINT's CMD reset and
    /// MultipleInstructionsDisallowed).
    pub(crate) cmd: Option<Instruction>,
    pub(crate) entrypoint: Option<Instruction>,
    pub(crate) healthcheck: Option<Instruction>,
    pub(crate) workdir_set: bool,
    pub(crate) ops: Vec<Op>,
    pub(crate) names: Rc<StageNames>,
    pub(crate) index: usize,
}

/// A name an instruction sets.
pub(crate) enum Change {
    Env(String, String),
    Arg(String, Option<String>),
}

/// The names expansion sees in a stage. Kept as maps and updated once per instruction,
/// so a stage of n ENV lines costs O(n log n), not a fresh copy per instruction.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) args: BTreeMap<String, Option<String>>,
}

impl Scope {
    pub(crate) fn new(config: &ImageConfig, args: &[(String, Option<String>)]) -> Scope {
        let mut scope = Scope::default();
        for (k, v) in args {
            scope.args.insert(k.clone(), v.clone());
        }
        for e in config.config.env.iter().flatten() {
            if let Some((k, v)) = e.split_once('=') {
                scope.env.insert(k.into(), v.into());
            }
        }
        scope
    }

    /// A name's value: ENV wins over ARG of the same name, as in Docker.
    pub(crate) fn get(&self, k: &str) -> Option<String> {
        match self.env.get(k) {
            Some(v) => Some(v.clone()),
            None => self.args.get(k).cloned().flatten(),
        }
    }

    /// Whether ENV sets `k` or an ARG declares it (with or without a value).
    pub(crate) fn defines(&self, k: &str) -> bool {
        self.env.contains_key(k) || self.args.contains_key(k)
    }

    /// Every defined name, sorted, once each.
    pub(crate) fn names(&self) -> BTreeSet<&String> {
        self.env.keys().chain(self.args.keys()).collect()
    }
}

/// A stage's ARGs in declaration order; declaring one again moves it to the end.
#[derive(Default)]
pub(crate) struct OrderedArgs {
    /// Entries in order; `None` where an entry was declared again later.
    pub(crate) entries: Vec<Option<(String, Option<String>)>>,
    /// Where each name's live entry is.
    pub(crate) index: BTreeMap<String, usize>,
}

impl OrderedArgs {
    pub(crate) fn new(args: Vec<(String, Option<String>)>) -> OrderedArgs {
        let mut out = OrderedArgs::default();
        for (k, v) in args {
            out.set(&k, v);
        }
        out
    }

    pub(crate) fn set(&mut self, name: &str, value: Option<String>) {
        if let Some(old) = self.index.insert(name.to_string(), self.entries.len())
            && let Some(slot) = self.entries.get_mut(old)
        {
            *slot = None;
        }
        self.entries.push(Some((name.to_string(), value)));
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(String, Option<String>)> {
        self.entries.iter().flatten()
    }

    pub(crate) fn into_vec(self) -> Vec<(String, Option<String>)> {
        self.entries.into_iter().flatten().collect()
    }
}

/// Where each name of `config`'s ENV is (the first entry, which `set_env` replaces).
pub(crate) fn env_index(config: &ImageConfig) -> BTreeMap<String, usize> {
    let mut index = BTreeMap::new();
    for (i, e) in config.config.env.iter().flatten().enumerate() {
        if let Some((k, _)) = e.split_once('=') {
            index.entry(k.to_string()).or_insert(i);
        }
    }
    index
}

impl StageState {
    /// `ENV k=v`: replaces the entry in place or appends one, as `ImageConfig::set_env`,
    /// without searching the list.
    pub(crate) fn set_env(&mut self, k: &str, v: &str) {
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{k}={v}");
        match self.env_index.get(k).and_then(|&i| env.get_mut(i)) {
            Some(slot) => *slot = entry,
            None => {
                self.env_index.insert(k.to_string(), env.len());
                env.push(entry);
            }
        }
        self.pending.push(Change::Env(k.to_string(), v.to_string()));
    }

    /// `ARG name[=value]` in the stage.
    pub(crate) fn set_arg(&mut self, name: &str, value: Option<String>) {
        self.args.set(name, value.clone());
        self.pending.push(Change::Arg(name.to_string(), value));
    }

    /// Puts the last instruction's changes into the scope the next one sees.
    pub(crate) fn apply_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // The scope is shared only while an instruction is lowered: no copy is made here.
        let scope = Rc::make_mut(&mut self.scope);
        for change in self.pending.drain(..) {
            match change {
                Change::Env(k, v) => {
                    scope.env.insert(k, v);
                }
                Change::Arg(k, v) => {
                    scope.args.insert(k, v);
                }
            }
        }
    }

    /// The working directory RUN steps start in.
    pub(crate) fn cwd(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }

    /// The SHELL a shell-form command runs with.
    pub(crate) fn shell(&self) -> Vec<String> {
        self.config
            .config
            .shell
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// The `|N K=V ...` prefix BuildKit puts before a RUN command in history: every ARG
    /// declared in the stage, with ENV taking precedence for the value. Proxy build args
    /// that no ARG declares stay out of it (they only reach the RUN environment).
    pub(crate) fn history_args(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|(k, v)| {
                let v = self
                    .scope
                    .env
                    .get(k)
                    .or(v.as_ref())
                    .map(String::as_str)
                    .unwrap_or_default();
                format!("{k}={v}")
            })
            .collect()
    }

    /// A RUN step's environment: the config's ENV and the stage's ARGs.
    pub(crate) fn run_env(&self) -> Vec<String> {
        let mut env: Vec<String> = self.config.config.env.clone().unwrap_or_default();
        if !self.env_index.contains_key("PATH") {
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        for (k, v) in self.args.iter() {
            if let Some(v) = v
                && !self.env_index.contains_key(k)
            {
                env.push(format!("{k}={v}"));
            }
        }
        env
    }
}

/// The stages' `AS` names, and where each name was last used, so a stage reference is
/// found without a walk over all stages.
#[derive(Debug, Default)]
pub(crate) struct StageNames {
    pub(crate) list: Vec<Option<String>>,
    pub(crate) last: HashMap<String, usize>,
}

impl StageNames {
    pub(crate) fn new(list: Vec<Option<String>>) -> StageNames {
        let mut last = HashMap::new();
        for (i, name) in list.iter().enumerate() {
            if let Some(name) = name {
                last.insert(name.clone(), i);
            }
        }
        StageNames { list, last }
    }

    /// The stage `value` names: an index, or the last stage with that (case-insensitive)
    /// name; `None` for an image.
    pub(crate) fn resolve(&self, value: &str) -> Result<Option<usize>, String> {
        if let Ok(i) = value.parse::<usize>() {
            return if i < self.list.len() {
                Ok(Some(i))
            } else {
                Err(format!("invalid stage index {i}"))
            };
        }
        Ok(self.last.get(&value.to_lowercase()).copied())
    }
}
