//! Command-line flags: `--name value` pairs after a subcommand.

use std::collections::HashMap;
use std::str::FromStr;

pub struct Args {
    pub command: String,
    flags: HashMap<String, String>,
}

impl Args {
    pub fn parse() -> Result<Args, String> {
        let mut raw = std::env::args().skip(1);
        let command = raw.next().ok_or("missing subcommand")?;
        let mut flags = HashMap::new();
        while let Some(flag) = raw.next() {
            let name = flag.strip_prefix("--").ok_or_else(|| format!("expected --flag, got {flag:?}"))?;
            let value = raw.next().ok_or_else(|| format!("--{name} needs a value"))?;
            flags.insert(name.to_owned(), value);
        }
        Ok(Args { command, flags })
    }

    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.flags.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: cannot parse {v:?}")),
        }
    }

    pub fn required(&self, name: &str) -> Result<String, String> {
        self.flags.get(name).cloned().ok_or_else(|| format!("--{name} is required"))
    }

    pub fn optional<T: FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        self.flags.get(name).map(|v| v.parse().map_err(|_| format!("--{name}: cannot parse {v:?}"))).transpose()
    }
}
