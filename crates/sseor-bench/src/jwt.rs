//! `jwt`: how fast one sseor opens streams when each presents a token to verify, or a
//! session cookie that the application's login endpoint checks (the auth callout), against
//! the same without authentication. One fresh server per variant; a token per user is
//! minted before the clock starts, so that only the server's work is timed. The callout
//! variants ask an application in this process ([`LoginApp`]): `callout-uncached` asks it
//! for every stream; `callout-cached` opens and closes every stream once before the clock
//! starts, so that the timed opens (a reconnect storm) find their decisions kept.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::client::{OpenOptions, open_all_with_headers, wait_until_serving};
use crate::login_app::{LoginApp, session_cookie};
use crate::random;
use crate::server::{ServerOptions, start_sseor};
use crate::stats::round;
use crate::temp_dir::TempDir;

/// What `jwt` is given.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct JwtArgs {
    /// Streams to open per variant, one user each.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) connections: usize,
    /// The variants, in the order they run: `none` (no authentication), `hs256`, `es256`,
    /// `rs256`, `callout-uncached`, `callout-cached`.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "none,hs256,es256"
    )]
    pub(crate) variants: Vec<Variant>,
    /// How many times the whole list runs (each run is reported).
    #[arg(long, default_value_t = 1)]
    pub(crate) rounds: usize,
    #[command(flatten)]
    pub(crate) open: OpenOptions,
}

/// How the streams authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Variant {
    /// No authentication configured; streams name their user with `?user_id=`.
    None,
    /// HS256 tokens, `SSEOR_JWT_SECRET`.
    Hs256,
    /// ES256 tokens (P-256 key made with `openssl`), `SSEOR_JWT_PUBLIC_KEY`.
    Es256,
    /// RS256 tokens (2048-bit key made with `openssl`), `SSEOR_JWT_PUBLIC_KEY`.
    Rs256,
    /// A session cookie checked by the application for every stream
    /// (`SSEOR_AUTH_URL`, `SSEOR_AUTH_CACHE_TTL=0s`).
    CalloutUncached,
    /// A session cookie whose decision sseor has kept (`SSEOR_AUTH_CACHE_TTL=10m`): every
    /// stream was opened once before.
    CalloutCached,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::None => "none",
            Variant::Hs256 => "hs256",
            Variant::Es256 => "es256",
            Variant::Rs256 => "rs256",
            Variant::CalloutUncached => "callout-uncached",
            Variant::CalloutCached => "callout-cached",
        }
    }
}

/// The server's setting and the key tokens are signed with.
struct Keys {
    env: Vec<(&'static str, String)>,
    signing: Option<(Algorithm, EncodingKey)>,
    login: Option<LoginApp>,
    _dir: TempDir,
}

impl Keys {
    async fn make(variant: Variant) -> Result<Self, String> {
        let dir = TempDir::new("jwt")?;
        let login = match variant {
            Variant::CalloutUncached | Variant::CalloutCached => Some(LoginApp::start().await?),
            _ => None,
        };
        let (env, signing) = match (variant, &login) {
            (Variant::CalloutUncached | Variant::CalloutCached, Some(app)) => {
                let ttl = if variant == Variant::CalloutCached {
                    "10m"
                } else {
                    "0s"
                };
                let env = vec![
                    ("SSEOR_AUTH_URL", app.url()),
                    ("SSEOR_AUTH_CACHE_TTL", ttl.to_owned()),
                    ("SSEOR_PUBLISH_TOKEN", random::hex(256)),
                ];
                (env, None)
            }
            (Variant::None | Variant::CalloutUncached | Variant::CalloutCached, _) => {
                (Vec::new(), None)
            }
            (Variant::Hs256, _) => {
                // 256 random bits: a secret that lives as long as one run.
                let secret = random::hex(256);
                let key = EncodingKey::from_secret(secret.as_bytes()).map_err(|e| e.to_string())?;
                (
                    vec![("SSEOR_JWT_SECRET", secret)],
                    Some((Algorithm::HS256, key)),
                )
            }
            (Variant::Es256 | Variant::Rs256, _) => {
                let (options, algorithm): (&[&str], _) = if variant == Variant::Es256 {
                    (
                        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                        Algorithm::ES256,
                    )
                } else {
                    (
                        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                        Algorithm::RS256,
                    )
                };
                let private = dir.path("key.pem");
                let public = dir.path("pub.pem");
                let private_arg = private.display().to_string();
                openssl(&[&["genpkey"], options, &["-out", &private_arg]].concat())?;
                openssl(&[
                    "pkey",
                    "-in",
                    &private_arg,
                    "-pubout",
                    "-out",
                    &public.display().to_string(),
                ])?;
                let pem = std::fs::read(&private).map_err(|e| e.to_string())?;
                let key = if variant == Variant::Es256 {
                    EncodingKey::from_ec_pem(&pem)
                } else {
                    EncodingKey::from_rsa_pem(&pem)
                }
                .map_err(|e| e.to_string())?;
                (
                    vec![("SSEOR_JWT_PUBLIC_KEY", public.display().to_string())],
                    Some((algorithm, key)),
                )
            }
        };
        Ok(Self {
            env,
            signing,
            login,
            _dir: dir,
        })
    }

    /// The headers and path with which user `uN` opens its stream.
    fn stream(&self, user: &str, exp: u64) -> Result<(String, String), String> {
        if self.login.is_some() {
            return Ok(("/api/v1/sse".into(), session_cookie(user)));
        }
        match &self.signing {
            None => Ok((format!("/api/v1/sse?user_id={user}"), String::new())),
            Some((algorithm, key)) => {
                let claims = json!({"sub": user, "exp": exp});
                let token = jsonwebtoken::encode(&Header::new(*algorithm), &claims, key)
                    .map_err(|e| e.to_string())?;
                Ok((
                    "/api/v1/sse".into(),
                    format!("Authorization: Bearer {token}\r\n"),
                ))
            }
        }
    }
}

fn openssl(args: &[&str]) -> Result<(), String> {
    let output = std::process::Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Runs every variant `rounds` times and prints one JSON line with all of them.
pub(crate) async fn jwt(args: &JwtArgs, servers: &ServerOptions) -> Result<(), String> {
    let mut runs = Vec::new();
    for _ in 0..args.rounds.max(1) {
        for &variant in &args.variants {
            runs.push(run(variant, args, servers).await?);
        }
    }
    let rate_of = |name: &str| {
        let rates: Vec<f64> = runs
            .iter()
            .filter(|run| run["jwt"] == name)
            .filter_map(|run| run["streams_per_second"].as_f64())
            .collect();
        (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
    };
    let baseline = rate_of("none");
    let relative: serde_json::Map<String, Value> = args
        .variants
        .iter()
        .filter(|variant| **variant != Variant::None)
        .filter_map(|variant| {
            let ratio = rate_of(variant.name())? / baseline?;
            Some((variant.name().to_owned(), json!(round(ratio))))
        })
        .collect();
    println!(
        "{}",
        json!({
            "server": "sseor",
            "scenario": "jwt",
            "connections": args.connections,
            "concurrency": args.open.concurrency,
            "runs": runs,
            "streams_per_second_vs_none": relative,
        })
    );
    Ok(())
}

/// One fresh server, `connections` tokens minted, then every stream opened and timed.
async fn run(variant: Variant, args: &JwtArgs, servers: &ServerOptions) -> Result<Value, String> {
    let keys = Keys::make(variant).await?;
    let env: Vec<(&str, &str)> = keys.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (process, port) = start_sseor(&servers.server, &env).await?;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + 3600;
    let (warm_path, warm_headers) = keys.stream("warmup", exp)?;
    wait_until_serving(port, &warm_path, &warm_headers)
        .await
        .map_err(|e| format!("sseor does not serve streams: {e}"))?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let minting = Instant::now();
    let streams = (0..args.connections)
        .map(|i| {
            keys.stream(&format!("u{i}"), exp)
                .map(|(path, headers)| (i, port, path, headers))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mint_seconds = minting.elapsed().as_secs_f64();
    if variant == Variant::CalloutCached {
        // Every decision asked once and kept: the timed opens are a reconnect storm.
        let warm = open_all_with_headers(streams.clone(), &args.open).await;
        drop(warm);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let calls_before = keys.login.as_ref().map(LoginApp::calls);

    let rss_before = process.rss_kib();
    let opened = open_all_with_headers(streams, &args.open).await;
    let callouts = keys
        .login
        .as_ref()
        .zip(calls_before)
        .map(|(app, before)| app.calls() - before);
    let count = opened.streams.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = process.rss_kib();
    Ok(json!({
        "jwt": variant.name(),
        "connections_opened": count,
        "not_opened": opened.not_opened,
        "failed_attempts": opened.failed_attempts,
        "open_error": opened.first_error,
        "open_seconds": round(opened.seconds),
        "streams_per_second": round(count as f64 / opened.seconds.max(1e-9)),
        "mint_seconds": round(mint_seconds),
        "callouts": callouts,
        "kib_per_connection": round((rss_idle as f64 - rss_before as f64) / count.max(1) as f64),
    }))
}
