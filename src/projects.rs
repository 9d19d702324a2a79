//! Per-project settings: how a new session worktree is made ready to build — a setup command
//! run once in it, and heavy ignored directories brought from the checkout. The server keeps
//! them in `DATA_DIR/projects.json` (people set them with `boocoder project …`); a project may
//! also commit `.boocoder/project.json`, read only when the server is told to trust it (flag,
//! or the project's own entry), because it is code from whoever can push to the repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::worktree::BringStrategy;

/// The server's file, in the data directory.
pub const FILE_NAME: &str = "projects.json";
/// The repository's own file, at the checkout's root.
pub const REPO_FILE: &str = ".boocoder/project.json";
/// How long a setup command may run when nothing says otherwise.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ProjectsError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One project's settings, as either file spells them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSettings {
    /// Argument vector run in each new session worktree before its first turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_timeout_secs: Option<u64>,
    /// Ignored directories brought from the checkout into each new worktree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bring: Vec<BringEntry>,
    /// Server file only: also read the repository's committed file for what this entry
    /// leaves unset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trust_repo_file: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BringEntry {
    pub path: String,
    #[serde(default = "copy")]
    pub strategy: BringStrategy,
}

fn copy() -> BringStrategy {
    BringStrategy::Copy
}

/// What a new worktree of the project gets, with where each part came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bootstrap {
    pub setup: Option<Setup>,
    pub bring: Vec<(String, BringStrategy)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub argv: Vec<String>,
    pub timeout: Duration,
    /// `projects.json` or `.boocoder/project.json`, for the transcript.
    pub source: &'static str,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    #[serde(default)]
    projects: BTreeMap<String, ProjectSettings>,
}

/// The server's settings file under `data_dir`.
pub fn server_file(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

fn read_file(path: &Path) -> Result<ServerFile, ProjectsError> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ServerFile::default()),
        Err(source) => {
            return Err(ProjectsError::Io {
                path: shown,
                source,
            });
        }
    };
    if text.trim().is_empty() {
        return Ok(ServerFile::default());
    }
    let file: ServerFile = serde_json::from_str(&text).map_err(|e| ProjectsError::Invalid {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    for (project, s) in &file.projects {
        check(s).map_err(|message| ProjectsError::Invalid {
            path: shown.clone(),
            message: format!("projects.{project}: {message}"),
        })?;
    }
    Ok(file)
}

/// The settings the server keeps for `project` (a canonical checkout root).
pub fn server_entry(data_dir: &Path, project: &Path) -> Result<ProjectSettings, ProjectsError> {
    let file = read_file(&server_file(data_dir))?;
    Ok(file
        .projects
        .get(&key(project))
        .cloned()
        .unwrap_or_default())
}

/// Change the server's entry for `project` and write the file back atomically; returns the
/// entry as saved. An entry left empty is removed.
pub fn edit(
    data_dir: &Path,
    project: &Path,
    change: impl FnOnce(&mut ProjectSettings),
) -> Result<ProjectSettings, ProjectsError> {
    let path = server_file(data_dir);
    let mut file = read_file(&path)?;
    let k = key(project);
    let mut entry = file.projects.remove(&k).unwrap_or_default();
    change(&mut entry);
    check(&entry).map_err(|message| ProjectsError::Invalid {
        path: path.display().to_string(),
        message,
    })?;
    if entry != ProjectSettings::default() {
        file.projects.insert(k, entry.clone());
    }
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| ProjectsError::Invalid {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    text.push('\n');
    crate::config::write_atomically(&path, text.as_bytes()).map_err(|source| {
        ProjectsError::Io {
            path: path.display().to_string(),
            source,
        }
    })?;
    Ok(entry)
}

/// What a new worktree of `project` gets: the server's entry, completed from the repository's
/// committed file when `trust_repo` (the server flag) or the entry itself allows it.
pub fn bootstrap(
    data_dir: &Path,
    project: &Path,
    trust_repo: bool,
) -> Result<Bootstrap, ProjectsError> {
    let server = server_entry(data_dir, project)?;
    let repo = if trust_repo || server.trust_repo_file {
        repo_entry(project)?
    } else {
        None
    };
    let mut out = Bootstrap::default();
    let from = |s: &ProjectSettings, source| {
        (!s.setup.is_empty()).then(|| Setup {
            argv: s.setup.clone(),
            timeout: s
                .setup_timeout_secs
                .map_or(DEFAULT_SETUP_TIMEOUT, Duration::from_secs),
            source,
        })
    };
    out.setup = from(&server, FILE_NAME).or_else(|| repo.as_ref().and_then(|r| from(r, REPO_FILE)));
    let bring = if server.bring.is_empty() {
        repo.map(|r| r.bring).unwrap_or_default()
    } else {
        server.bring
    };
    out.bring = bring.into_iter().map(|b| (b.path, b.strategy)).collect();
    Ok(out)
}

/// The repository's committed settings, if it has the file.
fn repo_entry(project: &Path) -> Result<Option<ProjectSettings>, ProjectsError> {
    let path = project.join(REPO_FILE);
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ProjectsError::Io {
                path: shown,
                source,
            });
        }
    };
    let s: ProjectSettings = serde_json::from_str(&text).map_err(|e| ProjectsError::Invalid {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    check(&s).map_err(|message| ProjectsError::Invalid {
        path: shown.clone(),
        message,
    })?;
    if s.trust_repo_file {
        return Err(ProjectsError::Invalid {
            path: shown,
            message: "`trust_repo_file` belongs in the server's projects.json only".into(),
        });
    }
    Ok(Some(s))
}

fn check(s: &ProjectSettings) -> Result<(), String> {
    if s.setup.first().is_some_and(|p| p.is_empty()) {
        return Err("`setup`: the program (first element) is empty".into());
    }
    if s.setup_timeout_secs == Some(0) {
        return Err("`setup_timeout_secs` must be at least 1".into());
    }
    for b in &s.bring {
        let p = Path::new(&b.path);
        if b.path.is_empty()
            || !p
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "`bring`: `{}` is not a relative path inside the project",
                b.path
            ));
        }
    }
    Ok(())
}

fn key(project: &Path) -> String {
    project.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_file(project: &Path, text: &str) {
        std::fs::create_dir_all(project.join(".boocoder")).unwrap();
        std::fs::write(project.join(REPO_FILE), text).unwrap();
    }

    #[test]
    fn the_repository_file_counts_only_when_trusted_and_the_server_entry_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (data, project) = (dir.path().join("data"), dir.path().join("p"));
        std::fs::create_dir_all(&project).unwrap();
        repo_file(
            &project,
            r#"{"setup": ["npm", "ci"], "bring": [{"path": "node_modules"}]}"#,
        );
        assert_eq!(
            bootstrap(&data, &project, false).unwrap(),
            Bootstrap::default()
        );
        let trusted = bootstrap(&data, &project, true).unwrap();
        let setup = trusted.setup.unwrap();
        assert_eq!(
            (setup.argv, setup.source),
            (vec!["npm".into(), "ci".into()], REPO_FILE)
        );
        assert_eq!(setup.timeout, DEFAULT_SETUP_TIMEOUT);
        assert_eq!(
            trusted.bring,
            vec![("node_modules".to_string(), BringStrategy::Copy)]
        );

        let saved = edit(&data, &project, |s| {
            s.setup = vec!["make".into(), "deps".into()];
            s.setup_timeout_secs = Some(30);
            s.trust_repo_file = true;
        })
        .unwrap();
        assert!(saved.trust_repo_file);
        // the entry trusts the repository file itself; its own setup wins, `bring` comes from
        // the repository
        let b = bootstrap(&data, &project, false).unwrap();
        let setup = b.setup.unwrap();
        assert_eq!(setup.argv, vec!["make", "deps"]);
        assert_eq!(
            (setup.timeout, setup.source),
            (Duration::from_secs(30), FILE_NAME)
        );
        assert_eq!(b.bring.len(), 1);
    }

    #[test]
    fn bad_settings_are_refused_naming_the_field_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (data, project) = (dir.path().join("data"), dir.path().join("p"));
        let err = edit(&data, &project, |s| {
            s.bring = vec![BringEntry {
                path: "../outside".into(),
                strategy: BringStrategy::Symlink,
            }]
        })
        .unwrap_err();
        assert!(err.to_string().contains("`bring`: `../outside`"), "{err}");
        assert!(!server_file(&data).exists());
        let err = edit(&data, &project, |s| s.setup_timeout_secs = Some(0)).unwrap_err();
        assert!(err.to_string().contains("setup_timeout_secs"), "{err}");

        std::fs::create_dir_all(&project).unwrap();
        repo_file(&project, r#"{"setup": ["x"], "trust_repo_file": true}"#);
        let err = bootstrap(&data, &project, true).unwrap_err();
        assert!(err.to_string().contains("trust_repo_file"), "{err}");
        repo_file(&project, r#"{"setup": "npm ci"}"#);
        assert!(bootstrap(&data, &project, true).is_err());
    }

    #[test]
    fn an_entry_emptied_by_an_edit_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (data, project) = (dir.path().join("data"), dir.path().join("p"));
        edit(&data, &project, |s| s.setup = vec!["true".into()]).unwrap();
        edit(&data, &project, |s| s.setup.clear()).unwrap();
        let text = std::fs::read_to_string(server_file(&data)).unwrap();
        assert_eq!(text, "{\n  \"projects\": {}\n}\n");
    }
}
