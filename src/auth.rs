//! The token registry: who may send, what, from where, and how fast.
//!
//! The registry (a TOML file of `[[token]]` tables) maps secrets to tokens. Secrets are stored
//! as SHA-256 digests (`sha256`), or in plain text (`token`) for development; either way inlet
//! looks a presented secret up by its digest, so lookups never compare secrets byte by byte.
//! The registry is swapped atomically: a reload (file change, polled every second, or SIGHUP)
//! that fails to parse, or holds no token at all, keeps the previous registry and logs why. A
//! token's rate limiter survives reloads that keep its quota. Finding the secret in a request
//! is the HTTP layer's job (`http::authenticate`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::lane::{Lane, LaneSet, PerLane};
use crate::limit::Limiter;
use crate::metrics;

/// A resolved token: who sends, what they may send, and their limiter.
#[derive(Debug)]
pub struct Token {
    /// Registry name, safe to log and to use as a metric label.
    pub id: String,
    pub project_id: String,
    pub account_id: String,
    /// The lanes its `kinds` list.
    pub kinds: LaneSet,
    /// Origins allowed to send with this token (lowercase, no trailing slash); `None` allows any.
    pub allowed_origins: Option<Vec<String>>,
    pub limiter: Arc<Limiter>,
    /// Its byte quota (`bytes_per_sec`, `bytes_burst`), when its entry sets one: the bytes of
    /// its requests' bodies, decoded, beside the events.
    pub byte_limiter: Option<Arc<Limiter>>,
    /// The topic of each lane whose registry entry names one (`topics = { beacon = "…" }`),
    /// instead of the lane's.
    pub topics: PerLane<Option<Arc<str>>>,
}

impl Token {
    /// The topic this token's events of `lane` go to, when its entry names one.
    pub fn topic(&self, lane: Lane) -> Option<&Arc<str>> {
        self.topics[lane].as_ref()
    }

    /// Whether this token may send events of `kind`.
    pub fn allows(&self, kind: Lane) -> bool {
        !kind.spec().listed || self.kinds.contains(kind)
    }

    /// Whether a request from `origin` (a page's `scheme://host[:port]`, as its `Origin` or
    /// `Referer` names it) may use this token.
    ///
    /// A request that names no origin passes: only browsers send one, and a non-browser client
    /// can forge it anyway. The check keeps a leaked browser token from being used on other
    /// sites; it is not authentication.
    pub fn allows_origin(&self, origin: Option<&str>) -> bool {
        match (&self.allowed_origins, origin) {
            (Some(allowed), Some(origin)) => allowed.contains(&normalize_origin(origin)),
            _ => true,
        }
    }
}

/// The limiter of a quota of `rate` and `burst`: the previous registry's (`old`) when it held
/// the same quota, so a reload does not reset anyone's limit, else a new one.
fn kept(old: Option<&&Arc<Limiter>>, rate: NonZeroU32, burst: NonZeroU32) -> Arc<Limiter> {
    match old {
        Some(l) if l.rate_per_sec == rate.get() && l.burst == burst.get() => Arc::clone(l),
        _ => Arc::new(Limiter::new(rate, burst)),
    }
}

/// An origin as the registry stores it: trimmed, lowercase, without a trailing slash.
fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// One `[[token]]` table of the registry file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    sha256: Option<String>,
    token: Option<String>,
    project_id: String,
    account_id: String,
    kinds: Vec<String>,
    rate_per_sec: u32,
    burst: u32,
    bytes_per_sec: Option<u32>,
    bytes_burst: Option<u32>,
    allowed_origins: Option<Vec<String>>,
    /// Topics by lane name, for this token's events instead of the lanes' own.
    #[serde(default)]
    topics: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<Entry>,
}

/// An immutable snapshot of the registry.
#[derive(Debug, Default)]
pub struct Registry {
    by_digest: HashMap<[u8; 32], Arc<Token>>,
    /// How many tokens were given in plain text (a development convenience).
    pub plain: usize,
}

impl Registry {
    /// Parses a registry file's text. `previous` lends its limiters to tokens whose id and quota
    /// did not change, so a reload does not reset anyone's rate limit.
    pub fn parse(text: &str, previous: Option<&Registry>) -> anyhow::Result<Registry> {
        let file: File = toml::from_str(text)?;
        let old_limiters: HashMap<&str, &Arc<Limiter>> = previous
            .map(|r| {
                r.by_digest
                    .values()
                    .map(|t| (t.id.as_str(), &t.limiter))
                    .collect()
            })
            .unwrap_or_default();
        let old_byte_limiters: HashMap<&str, &Arc<Limiter>> = previous
            .map(|r| {
                (r.by_digest.values())
                    .filter_map(|t| Some((t.id.as_str(), t.byte_limiter.as_ref()?)))
                    .collect()
            })
            .unwrap_or_default();
        let mut registry = Registry::default();
        let mut ids = HashSet::new();
        for (i, e) in file.token.into_iter().enumerate() {
            let at = format!("token[{i}] (id `{}`)", e.id);
            if e.id.is_empty() {
                bail!("token[{i}]: `id` must not be empty");
            }
            if !ids.insert(e.id.clone()) {
                bail!("{at}: duplicate id");
            }
            let digest = match (&e.sha256, &e.token) {
                (Some(hex_digest), None) => {
                    let mut digest = [0u8; 32];
                    hex::decode_to_slice(hex_digest.trim(), &mut digest)
                        .with_context(|| format!("{at}: `sha256` must be 64 hex digits"))?;
                    digest
                }
                (None, Some(plain)) if !plain.is_empty() => {
                    registry.plain += 1;
                    Sha256::digest(plain.as_bytes()).into()
                }
                _ => bail!("{at}: give exactly one of `sha256` and a non-empty `token`"),
            };
            let mut kinds = LaneSet::default();
            // Any lane clients send may be named (`item` needs no entry, but may have one);
            // a lane inlet produces itself (dead letters) may not.
            let sent = |lane: &Lane| !lane.spec().posted;
            let listed = || {
                let names = Lane::all().filter(sent).map(Lane::as_str);
                names.collect::<Vec<_>>().join(", ")
            };
            for kind in &e.kinds {
                match Lane::named(kind).filter(sent) {
                    Some(lane) => kinds.insert(lane),
                    None => bail!("{at}: unknown kind `{kind}` in `kinds` ({})", listed()),
                }
            }
            if kinds.is_empty() {
                bail!("{at}: `kinds` must name at least one of {}", listed());
            }
            let (Some(rate), Some(burst)) =
                (NonZeroU32::new(e.rate_per_sec), NonZeroU32::new(e.burst))
            else {
                bail!("{at}: `rate_per_sec` and `burst` must be positive");
            };
            let limiter = kept(old_limiters.get(e.id.as_str()), rate, burst);
            let byte_limiter = match (e.bytes_per_sec, e.bytes_burst) {
                (None, None) => None,
                (Some(rate), Some(burst)) => {
                    let (Some(rate), Some(burst)) = (NonZeroU32::new(rate), NonZeroU32::new(burst))
                    else {
                        bail!("{at}: `bytes_per_sec` and `bytes_burst` must be positive");
                    };
                    Some(kept(old_byte_limiters.get(e.id.as_str()), rate, burst))
                }
                _ => bail!("{at}: give both `bytes_per_sec` and `bytes_burst`, or neither"),
            };
            let mut topics = PerLane::new(|_| None);
            for (lane, topic) in &e.topics {
                let Some(lane) = Lane::named(lane).filter(sent) else {
                    bail!("{at}: unknown lane `{lane}` in `topics` ({})", listed());
                };
                crate::config::check_topic(&format!("{at}: topics.{}", lane.as_str()), topic)?;
                topics.set(lane, Some(Arc::from(topic.as_str())));
            }
            let token = Token {
                topics,
                byte_limiter,
                id: e.id,
                project_id: e.project_id,
                account_id: e.account_id,
                kinds,
                allowed_origins: e
                    .allowed_origins
                    .map(|list| list.iter().map(|o| normalize_origin(o)).collect()),
                limiter,
            };
            if registry.by_digest.insert(digest, Arc::new(token)).is_some() {
                bail!("{at}: the same secret is already used by another token");
            }
        }
        Ok(registry)
    }

    /// The built-in registry of `inlet --dev`: one token, [`DEV_TOKEN`].
    pub fn dev() -> Registry {
        let text = format!(
            "[[token]]\nid = \"dev\"\ntoken = \"{DEV_TOKEN}\"\nproject_id = \"dev-project\"\n\
             account_id = \"dev-account\"\nkinds = [\"beacon\", \"occurrence\", \"recording\", \"traces\", \"logs\", \"metrics\"]\n\
             rate_per_sec = 10000\nburst = 20000\n"
        );
        Registry::parse(&text, None).expect("the dev registry is valid")
    }

    /// How many tokens the registry holds.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether the registry holds no token.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The token whose secret is `secret`.
    pub fn lookup(&self, secret: &str) -> Option<&Arc<Token>> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        self.by_digest.get(&digest)
    }
}

/// The development token printed by `inlet --dev`: letters only, so every SDK takes it as its
/// key (the Sentry JavaScript SDKs' DSN parser accepts only `\w+`).
pub const DEV_TOKEN: &str = "devtoken";

/// The live registry, swapped atomically on reload.
#[derive(Debug)]
pub struct Tokens {
    current: ArcSwap<Registry>,
    path: Option<PathBuf>,
}

impl Tokens {
    /// Loads the registry at `path`; a file that does not parse, or holds no token, is a
    /// start-up error.
    pub fn load(path: &Path) -> anyhow::Result<Tokens> {
        let registry = read(path, None).context("tokens_file")?;
        if registry.plain > 0 {
            tracing::warn!(
                plain = registry.plain,
                "token registry holds plain-text secrets: use `sha256` in production"
            );
        }
        tracing::info!(tokens = registry.len(), path = %path.display(), "token registry loaded");
        Ok(Tokens {
            current: ArcSwap::from_pointee(registry),
            path: Some(path.to_owned()),
        })
    }

    /// A fixed registry that is never reloaded.
    pub fn fixed(registry: Registry) -> Tokens {
        Tokens {
            current: ArcSwap::from_pointee(registry),
            path: None,
        }
    }

    /// Resolves a presented secret.
    pub fn lookup(&self, secret: &str) -> Option<Arc<Token>> {
        self.current.load().lookup(secret).cloned()
    }

    /// Re-reads the file; on failure (including a file with no token, which would lock every
    /// client out) keeps the current registry and says why.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let Some(path) = &self.path else {
            return Ok(self.current.load().len());
        };
        match read(path, Some(&self.current.load())) {
            Ok(registry) => {
                let n = registry.len();
                self.current.store(Arc::new(registry));
                ::metrics::counter!(metrics::TOKEN_RELOADS, "result" => "success").increment(1);
                tracing::info!(tokens = n, path = %path.display(), "token registry reloaded");
                Ok(n)
            }
            Err(error) => {
                ::metrics::counter!(metrics::TOKEN_RELOADS, "result" => "failure").increment(1);
                tracing::error!(error = format!("{error:#}"), path = %path.display(),
                    "token registry reload failed; keeping the previous registry");
                Err(error)
            }
        }
    }

    /// Watches the file: reloads when its contents change (polled every `every`) and on SIGHUP.
    /// Returns at once for a fixed registry.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut last = tokio::fs::read(&path).await.ok();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async { match hup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => true,
            };
            let now = tokio::fs::read(&path).await.ok();
            if forced || (now.is_some() && now != last) {
                if forced {
                    tracing::info!("SIGHUP: reloading the token registry");
                }
                let _ = self.reload();
                last = now;
            }
        }
    }
}

/// Reads and parses the registry file at `path`. A registry with no token is refused: it would
/// answer every request 401, which is never what an operator means (an empty or truncated file
/// written mid-deploy, a wrong path in a template).
fn read(path: &Path, previous: Option<&Registry>) -> anyhow::Result<Registry> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let registry =
        Registry::parse(&text, previous).with_context(|| format!("invalid {}", path.display()))?;
    if registry.is_empty() {
        bail!(
            "{} holds no token (no [[token]] table): every request would be refused",
            path.display()
        );
    }
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[token]]
id = "web"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
project_id = "p1"
account_id = "a1"
kinds = ["beacon"]
rate_per_sec = 5
burst = 10
allowed_origins = ["https://www.acme.example/"]

[[token]]
id = "server"
token = "plain-secret"
project_id = "p2"
account_id = "a2"
kinds = ["beacon", "occurrence"]
rate_per_sec = 100
burst = 100
"#;

    #[test]
    fn a_token_may_name_its_own_topics_for_the_lanes_it_sends() {
        let entry = |topics: &str| {
            format!(
                "[[token]]\nid = \"acme\"\ntoken = \"s\"\nproject_id = \"p\"\naccount_id = \"a\"\n\
                 kinds = [\"beacon\", \"traces\"]\nrate_per_sec = 1\nburst = 1\ntopics = {topics}\n"
            )
        };
        let registry = Registry::parse(
            &entry(r#"{ beacon = "acme.beacons", traces = "acme.spans" }"#),
            None,
        )
        .unwrap();
        let token = registry.by_digest.values().next().unwrap();
        assert_eq!(
            token.topic(Lane::BEACON).map(|t| &**t),
            Some("acme.beacons")
        );
        assert_eq!(token.topic(Lane::TRACES).map(|t| &**t), Some("acme.spans"));
        assert_eq!(token.topic(Lane::OCCURRENCE), None);
        let unknown = Registry::parse(&entry(r#"{ beacons = "x" }"#), None).unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("unknown lane `beacons` in `topics`"),
            "{unknown}"
        );
        let letters = Registry::parse(&entry(r#"{ dead_letter = "x" }"#), None).unwrap_err();
        assert!(
            letters.to_string().contains("unknown lane `dead_letter`"),
            "{letters}"
        );
        let invalid = Registry::parse(&entry(r#"{ beacon = "a b" }"#), None).unwrap_err();
        assert!(
            format!("{invalid:#}").contains("topics.beacon"),
            "{invalid:#}"
        );
    }

    #[test]
    fn a_byte_quota_needs_both_its_rate_and_its_burst() {
        let entry = |extra: &str| {
            format!(
                "[[token]]\nid = \"t\"\ntoken = \"s\"\nproject_id = \"p\"\naccount_id = \"a\"\n\
                 kinds = [\"beacon\"]\nrate_per_sec = 1\nburst = 1\n{extra}\n"
            )
        };
        let both = Registry::parse(&entry("bytes_per_sec = 10\nbytes_burst = 20"), None).unwrap();
        let limiter = both
            .by_digest
            .values()
            .next()
            .unwrap()
            .byte_limiter
            .clone()
            .unwrap();
        assert_eq!((limiter.rate_per_sec, limiter.burst), (10, 20));
        let none = Registry::parse(&entry(""), None).unwrap();
        assert!(none
            .by_digest
            .values()
            .next()
            .unwrap()
            .byte_limiter
            .is_none());
        let one = Registry::parse(&entry("bytes_per_sec = 10"), None).unwrap_err();
        assert!(
            one.to_string()
                .contains("both `bytes_per_sec` and `bytes_burst`"),
            "{one}"
        );
        let zero =
            Registry::parse(&entry("bytes_per_sec = 0\nbytes_burst = 20"), None).unwrap_err();
        assert!(zero.to_string().contains("must be positive"), "{zero}");
    }

    #[test]
    fn hashed_and_plain_secrets_resolve() {
        let r = Registry::parse(FILE, None).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.plain, 1);
        let web = r.lookup("test").expect("sha256 of `test`");
        assert_eq!(web.id, "web");
        assert!(web.allows(Lane::BEACON) && !web.allows(Lane::OCCURRENCE));
        assert_eq!(r.lookup("plain-secret").unwrap().account_id, "a2");
        assert!(r.lookup("nope").is_none());
    }

    #[test]
    fn the_dev_token_is_a_key_every_sdk_takes() {
        // Sentry's DSN parser (`\w+`) is the strictest of the five SDKs' key readers.
        assert!(DEV_TOKEN
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        assert_eq!(Registry::dev().lookup(DEV_TOKEN).unwrap().id, "dev");
    }

    #[test]
    fn a_token_may_list_the_item_lane_it_needs_no_entry_for() {
        let file = FILE.replace("kinds = [\"beacon\"]", "kinds = [\"beacon\", \"item\"]");
        let web = Registry::parse(&file, None)
            .unwrap()
            .lookup("test")
            .cloned()
            .unwrap();
        assert!(web.allows(Lane::ITEM) && web.allows(Lane::BEACON));
        let server = Registry::parse(FILE, None).unwrap();
        assert!(
            server.lookup("plain-secret").unwrap().allows(Lane::ITEM),
            "unlisted, allowed"
        );
    }

    #[test]
    fn bad_files_name_the_problem() {
        let cases = [
            ("[[token]]\nid=\"x\"\n", "missing field"),
            (
                &FILE.replace("kinds = [\"beacon\"]", "kinds = [\"metric\"]"),
                "unknown kind",
            ),
            // inlet's own lane is no token's to send.
            (
                &FILE.replace("kinds = [\"beacon\"]", "kinds = [\"dead_letter\"]"),
                "unknown kind",
            ),
            (
                &FILE.replace("id = \"server\"", "id = \"web\""),
                "duplicate id",
            ),
            (
                &FILE.replace("rate_per_sec = 5", "rate_per_sec = 0"),
                "must be positive",
            ),
            (
                &FILE.replace("sha256 = \"9f", "sha256 = \"zz"),
                "64 hex digits",
            ),
            (
                &FILE.replace("burst = 10\n", "burst = 10\ncolour = 1\n"),
                "colour",
            ),
        ];
        for (text, needle) in cases {
            let err = format!("{:#}", Registry::parse(text, None).unwrap_err());
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn reload_keeps_limiters_with_unchanged_quota() {
        let a = Registry::parse(FILE, None).unwrap();
        let b = Registry::parse(FILE, Some(&a)).unwrap();
        assert!(Arc::ptr_eq(
            &a.lookup("test").unwrap().limiter,
            &b.lookup("test").unwrap().limiter
        ));
        let c = Registry::parse(&FILE.replace("burst = 10", "burst = 20"), Some(&a)).unwrap();
        assert!(!Arc::ptr_eq(
            &a.lookup("test").unwrap().limiter,
            &c.lookup("test").unwrap().limiter
        ));
    }

    #[test]
    fn origins_are_checked_when_present() {
        let r = Registry::parse(FILE, None).unwrap();
        let web = r.lookup("test").unwrap();
        assert!(web.allows_origin(None));
        assert!(web.allows_origin(Some("https://WWW.acme.example")));
        assert!(web.allows_origin(Some("https://www.acme.example/")));
        assert!(!web.allows_origin(Some("https://evil.example")));
        let server = r.lookup("plain-secret").unwrap();
        assert!(server.allows_origin(Some("https://evil.example")));
    }

    #[test]
    fn an_empty_registry_is_refused_at_start_up_and_on_reload() {
        let dir = std::env::temp_dir().join(format!("inlet-auth-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.toml");
        for empty in ["", "# no tokens yet\n"] {
            std::fs::write(&path, empty).unwrap();
            let err = format!("{:#}", Tokens::load(&path).unwrap_err());
            assert!(err.starts_with("tokens_file"), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains("no token"), "{err}");
        }
        std::fs::write(&path, FILE).unwrap();
        let tokens = Tokens::load(&path).unwrap();
        std::fs::write(&path, "").unwrap();
        let err = format!("{:#}", tokens.reload().unwrap_err());
        assert!(err.contains("no token"), "{err}");
        assert_eq!(
            tokens.lookup("test").unwrap().id,
            "web",
            "the previous registry stays"
        );
        std::fs::write(&path, FILE.replace("id = \"web\"", "id = \"web2\"")).unwrap();
        assert_eq!(tokens.reload().unwrap(), 2);
        assert_eq!(tokens.lookup("test").unwrap().id, "web2");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_example_registry_is_valid() {
        let r = Registry::parse(include_str!("../deploy/tokens.example.toml"), None).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.lookup("test").unwrap().id, "acme-web");
    }
}
