//! Configuration layering shared by every binary: defaults → optional TOML file (`--config`)
//! → environment → command-line flags, later ones winning.
//!
//! Each service declares its settings once, as a `clap` struct whose every field has a long
//! flag and an environment variable. This module reads the TOML file and turns each of its
//! keys into the matching flag, placed so that the environment and real flags still win.
//! A key may be written as the flag (`database-url`), with underscores (`database_url`) or as
//! the environment variable (`DATABASE_URL`). Unknown keys stop the start with their name.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use clap::{CommandFactory, Parser};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--config: cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Where and what, never the line itself (toml's `Display` of the error quotes it), for
    /// the line may hold a secret.
    #[error("--config: `{path}` is not valid TOML: line {line}, column {column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("--config: unknown setting `{key}` in `{path}` (see --help for the settings)")]
    UnknownKey { path: PathBuf, key: String },
    #[error("--config: setting `{key}` in `{path}` must be a string, number, boolean or list")]
    BadValue { path: PathBuf, key: String },
    #[error("{0}")]
    Clap(#[from] clap::Error),
    #[error("{setting}: cannot read secret file `{path}`: {source}")]
    SecretFile {
        setting: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Parses the process's arguments into `T` with the layering described above. On a bad
/// setting, prints one clear line and exits (`--help` and `--version` exit 0).
pub fn load<T: Parser>() -> T {
    match load_from::<T, _>(std::env::args_os(), |name| std::env::var_os(name).is_some()) {
        Ok(config) => config,
        Err(ConfigError::Clap(error)) => error.exit(),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    }
}

/// [`load`] over explicit arguments; `env_is_set` says whether an environment variable is set.
pub fn load_from<T, I>(args: I, env_is_set: impl Fn(&str) -> bool) -> Result<T, ConfigError>
where
    T: Parser,
    I: IntoIterator<Item = OsString>,
{
    let mut args: Vec<OsString> = args.into_iter().collect();
    let config_path =
        take_config_flag(&mut args).or_else(|| std::env::var_os("CONFIG_FILE").map(PathBuf::from));
    if let Some(path) = config_path {
        let file_flags = flags_from_file::<T>(&path, &args, &env_is_set)?;
        // Program name first, then the file's values, then the real flags.
        let program = if args.is_empty() {
            OsString::from("app")
        } else {
            args.remove(0)
        };
        let mut layered = vec![program];
        layered.extend(file_flags);
        layered.extend(args);
        args = layered;
    }
    let matches = T::command().try_get_matches_from(args)?;
    Ok(<T as clap::FromArgMatches>::from_arg_matches(&matches)?)
}

/// Reads a secret from `file` when given, else returns `value`; a trailing newline is dropped.
pub fn secret_from_file(
    setting: &'static str,
    file: Option<&PathBuf>,
    value: Option<secrecy::SecretString>,
) -> Result<Option<secrecy::SecretString>, ConfigError> {
    match file {
        None => Ok(value),
        Some(path) => std::fs::read_to_string(path)
            .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_owned().into()))
            .map_err(|source| ConfigError::SecretFile {
                setting,
                path: path.clone(),
                source,
            }),
    }
}

/// Removes `--config PATH` / `--config=PATH` from the arguments and returns the path.
fn take_config_flag(args: &mut Vec<OsString>) -> Option<PathBuf> {
    let position = args.iter().position(|a| {
        a.to_str()
            .is_some_and(|a| a == "--config" || a.starts_with("--config="))
    })?;
    let flag = args.remove(position);
    let flag = flag.to_string_lossy();
    match flag.strip_prefix("--config=") {
        Some(path) => Some(PathBuf::from(path)),
        None if position < args.len() => Some(PathBuf::from(args.remove(position))),
        None => None,
    }
}

/// `--flag=value` for every key of the file whose setting is not already given by the
/// environment or on the command line.
fn flags_from_file<T: CommandFactory>(
    path: &PathBuf,
    args: &[OsString],
    env_is_set: &impl Fn(&str) -> bool,
) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|error| parse_error(path, &text, &error))?;
    let command = T::command();
    let mut flags = Vec::new();
    for (key, value) in table {
        let wanted = key.replace('_', "-").to_ascii_lowercase();
        let arg = command
            .get_arguments()
            .find(|arg| {
                arg.get_long().is_some_and(|long| long == wanted)
                    || arg
                        .get_env()
                        .is_some_and(|env| env.to_string_lossy().eq_ignore_ascii_case(&key))
            })
            .ok_or_else(|| ConfigError::UnknownKey {
                path: path.clone(),
                key: key.clone(),
            })?;
        let Some(long) = arg.get_long() else { continue };
        let in_env = arg
            .get_env()
            .is_some_and(|env| env_is_set(&env.to_string_lossy()));
        let on_command_line = args.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")))
        });
        if in_env || on_command_line {
            continue;
        }
        let value = toml_value_text(&value).ok_or_else(|| ConfigError::BadValue {
            path: path.clone(),
            key: key.clone(),
        })?;
        if arg.get_action().takes_values() {
            flags.push(OsString::from(format!("--{long}={value}")));
        } else if value == "true" {
            // A switch (`--flag` with no value): present means on.
            flags.push(OsString::from(format!("--{long}")));
        }
    }
    Ok(flags)
}

/// A TOML syntax error as [`ConfigError::Parse`]: the 1-based line and column of its start,
/// and toml's message without the quoted source (the message names what was expected, from
/// the grammar, not what was found).
fn parse_error(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
    let at = error.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    ConfigError::Parse {
        path: path.to_owned(),
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        message: crate::loggable(error.message(), MAX_MESSAGE_CHARS).into_owned(),
    }
}

/// toml's messages are a line or two; a longer one is cut rather than trusted.
const MAX_MESSAGE_CHARS: usize = 200;

fn toml_value_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(toml_value_text)
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct Settings {
        #[arg(long, env = "TEST_CFG_ADDR", default_value = "127.0.0.1:1")]
        addr: String,
        #[arg(long, env = "TEST_CFG_URLS", value_delimiter = ',')]
        urls: Vec<String>,
        #[arg(long, env = "TEST_CFG_LIMIT", default_value_t = 5)]
        limit: u32,
        #[arg(long, env = "TEST_CFG_ON", default_value_t = false)]
        on: bool,
    }

    fn file(text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("cfg-{}.toml", crate::wxpay::time::nonce_str()));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn file_values_override_defaults() {
        let path =
            file("addr = \"0.0.0.0:9\"\nurls = [\"a\", \"b\"]\nTEST_CFG_LIMIT = 7\non = true\n");
        let path = path.to_string_lossy().to_string();
        let s: Settings = load_from(args(&["app", "--config", &path]), |_| false).unwrap();
        assert_eq!(s.addr, "0.0.0.0:9");
        assert_eq!(s.urls, vec!["a", "b"]);
        assert_eq!(s.limit, 7);
        assert!(s.on);
    }

    #[test]
    fn flags_and_environment_beat_the_file() {
        let path = file("addr = \"0.0.0.0:9\"\nlimit = 7\n");
        let flag = format!("--config={}", path.to_string_lossy());
        let s: Settings = load_from(args(&["app", &flag, "--limit", "8"]), |name| {
            name == "TEST_CFG_ADDR"
        })
        .unwrap();
        // TEST_CFG_ADDR is "set" but not really in this process's environment, so clap falls
        // back to the default: what matters is that the file did not override it.
        assert_eq!(s.addr, "127.0.0.1:1");
        assert_eq!(s.limit, 8);
    }

    #[test]
    fn a_syntax_error_is_placed_but_never_quoted() {
        const SECRET: &str = "s3cr3t-t0ken-0123456789";
        for text in [
            // An unterminated string.
            format!("addr = \"0.0.0.0:9\"\ntoken = \"{SECRET}\n"),
            // A bare word where a value belongs.
            format!("addr = \"0.0.0.0:9\"\n\ntoken = {SECRET}\n"),
            // An invalid escape inside the secret.
            format!("token = \"{SECRET}\\q{SECRET}\"\n"),
            // A missing `=`, after some non-ASCII.
            format!("# 配置\ntoken \"{SECRET}\"\n"),
        ] {
            // Where toml itself places the error, in the first line of the text it would
            // print (the next ones quote the line).
            let toml_says = text.parse::<toml::Table>().unwrap_err().to_string();
            assert!(toml_says.contains(SECRET), "{toml_says}");
            let position = toml_says
                .lines()
                .next()
                .and_then(|line| line.strip_prefix("TOML parse error at "))
                .unwrap()
                .to_owned();

            let path = file(&text);
            let error = load_from::<Settings, _>(
                args(&["app", "--config", &path.to_string_lossy()]),
                |_| false,
            )
            .unwrap_err();
            let shown = error.to_string();
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(!shown.contains('\n'), "{shown}");
            assert!(
                shown.starts_with(&format!(
                    "--config: `{}` is not valid TOML: {position}: ",
                    path.display()
                )),
                "{text:?}: {shown}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_setting() {
        let path = file("nope = 1\n");
        let path = path.to_string_lossy().to_string();
        let error =
            load_from::<Settings, _>(args(&["app", "--config", &path]), |_| false).unwrap_err();
        assert!(
            error.to_string().contains("unknown setting `nope`"),
            "{error}"
        );

        let path = file("limit = \"many\"\n");
        let path = path.to_string_lossy().to_string();
        let error =
            load_from::<Settings, _>(args(&["app", "--config", &path]), |_| false).unwrap_err();
        assert!(error.to_string().contains("--limit"), "{error}");

        let error =
            load_from::<Settings, _>(args(&["app", "--config", "/nonexistent.toml"]), |_| false)
                .unwrap_err();
        assert!(error.to_string().contains("cannot read"), "{error}");
    }
}
