//! `canopy passwd`: adds, changes and deletes users in a broker password file
//! (`[auth] password_file`), like mosquitto_passwd but writing argon2id hashes.
//!
//! Owns reading the password (twice from the terminal without echo, or once from stdin with
//! `--stdin`) and rewriting the file (atomically through a temporary file beside it, mode 0600
//! on Unix). The format and the hashing live in `canopy_model::password`, which the broker
//! reads with. Must never print, log or keep a password.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use canopy_model::password::{PasswordFile, check_user_name, hash_password};

use crate::cli::PasswdArgs;
use crate::error::CliError;

/// Runs `canopy passwd` with its parsed arguments.
pub fn run(args: &PasswdArgs) -> Result<(), CliError> {
    check_user_name(&args.user).map_err(|e| CliError::Usage(e.message))?;
    let mut file = if args.create {
        PasswordFile::default()
    } else {
        read_file(&args.file)?
    };
    if args.delete {
        if !file.remove(&args.user) {
            return Err(CliError::Usage(format!(
                "user {:?} is not in {}",
                args.user,
                args.file.display()
            )));
        }
    } else {
        let password = if args.stdin {
            read_stdin_password(&mut std::io::stdin().lock())?
        } else {
            prompt_twice()?
        };
        if password.is_empty() {
            return Err(CliError::Usage("the password is empty".to_owned()));
        }
        let hash = hash_password(password.as_bytes()).map_err(|e| CliError::Usage(e.message))?;
        file.set(&args.user, hash)
            .map_err(|e| CliError::Usage(e.message))?;
    }
    write_file(&args.file, &file.to_string())
}

/// Reads and parses an existing password file.
fn read_file(path: &Path) -> Result<PasswordFile, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Input {
        what: if source.kind() == std::io::ErrorKind::NotFound {
            format!("{} (use -c to create it)", path.display())
        } else {
            path.display().to_string()
        },
        source,
    })?;
    PasswordFile::parse(&text)
        .map_err(|e| CliError::Usage(format!("{}:{}: {}", path.display(), e.line, e.message)))
}

/// The first line of `input`, without its line ending.
pub fn read_stdin_password(input: &mut impl BufRead) -> Result<String, CliError> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|source| CliError::Input {
            what: "the password from stdin".to_owned(),
            source,
        })?;
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
}

/// Asks for the password twice on the terminal, without echo.
fn prompt_twice() -> Result<String, CliError> {
    let tty_error = |source| CliError::Input {
        what: "the password from the terminal (use --stdin when there is none)".to_owned(),
        source,
    };
    let first = rpassword::prompt_password("Password: ").map_err(tty_error)?;
    let second = rpassword::prompt_password("Reenter password: ").map_err(tty_error)?;
    if first != second {
        return Err(CliError::Usage("the passwords do not match".to_owned()));
    }
    Ok(first)
}

/// Replaces `path` with `text` through a temporary file in the same directory, so a crash
/// never leaves a half-written password file.
fn write_file(path: &Path, text: &str) -> Result<(), CliError> {
    let tmp = temp_path(path);
    let io_error = |source| CliError::Input {
        what: tmp.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&tmp).map_err(io_error)?;
    out.write_all(text.as_bytes()).map_err(io_error)?;
    out.sync_all().map_err(io_error)?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        CliError::Input {
            what: path.display().to_string(),
            source,
        }
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_password_is_the_first_line_without_its_ending() {
        for (input, want) in [
            ("pw\n", "pw"),
            ("pw\r\nrest\n", "pw"),
            ("pw", "pw"),
            (" spaced pw \n", " spaced pw "),
            ("", ""),
        ] {
            let got = read_stdin_password(&mut input.as_bytes()).unwrap();
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn the_temporary_file_sits_beside_the_target() {
        let tmp = temp_path(Path::new("/etc/canopy/passwd"));
        assert_eq!(tmp.parent(), Some(Path::new("/etc/canopy")));
        assert!(tmp.to_string_lossy().starts_with("/etc/canopy/passwd.tmp"));
    }
}
