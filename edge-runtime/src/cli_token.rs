//! `edge token sign|verify`: mint and check every format the token-auth module accepts,
//! for ops and tests. `verify` exits 0 when valid, 1 when not (printing the reason code),
//! 2 when the arguments or key cannot be used.

use clap::Subcommand;
use edge_runtime::token::{self, Key, SignSpec, TokenFormat, VerifySpec};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Mint a token: prints the signed URL (or the token, or the cookies).
    Sign {
        /// akamai | cloudfront | jwt | native
        #[arg(long)]
        format: TokenFormat,
        /// A hex secret (HMAC formats) or the path of a PEM private key (CloudFront, JWT).
        #[arg(long)]
        key: String,
        /// Native: the key id; CloudFront: the key pair id; JWT: the `kid` header.
        #[arg(long)]
        key_id: Option<String>,
        /// The URL to sign.
        #[arg(long)]
        url: Option<String>,
        /// Expiry, unix seconds.
        #[arg(long, conflicts_with = "ttl")]
        expires: Option<u64>,
        /// Expiry, seconds from now (default 3600).
        #[arg(long)]
        ttl: Option<u64>,
        /// Akamai `st`, JWT `nbf`, CloudFront `DateGreaterThan` (unix seconds).
        #[arg(long)]
        start: Option<u64>,
        /// Bind to a client address (CloudFront: a CIDR; JWT: an `ip` claim).
        #[arg(long)]
        ip: Option<String>,
        /// Native: the path prefix granted (default: the URL's path).
        #[arg(long)]
        prefix: Option<String>,
        /// Akamai: an ACL token (`*` wildcards, `!` between patterns).
        #[arg(long)]
        acl: Option<String>,
        /// Akamai: sha256 | sha1 | md5.
        #[arg(long)]
        algorithm: Option<String>,
        /// Akamai: the `id` field.
        #[arg(long)]
        id: Option<String>,
        /// Akamai: the `data` field.
        #[arg(long)]
        data: Option<String>,
        /// CloudFront: a custom policy for this resource pattern (`*`, `?`).
        #[arg(long)]
        resource: Option<String>,
        /// CloudFront: print the three cookies instead of a URL.
        #[arg(long)]
        cookie: bool,
        /// JWT: HS256 | HS384 | HS512 | RS256 | PS256 | ES256 | EdDSA.
        #[arg(long)]
        alg: Option<String>,
        #[arg(long)]
        sub: Option<String>,
        #[arg(long)]
        iss: Option<String>,
        #[arg(long)]
        aud: Option<String>,
        /// JWT: a path pattern the token opens (`paths` claim); repeat for several.
        #[arg(long = "path")]
        paths: Vec<String>,
        /// A fixed clock for `--ttl` (unix seconds).
        #[arg(long)]
        now: Option<u64>,
    },
    /// Check a token as the node would; exit 0 when valid, 1 with the reason code when not.
    Verify {
        /// akamai | cloudfront | jwt | native
        #[arg(long)]
        format: TokenFormat,
        /// A hex secret (HMAC formats) or the path of a PEM or JWKS file.
        #[arg(long)]
        key: String,
        #[arg(long)]
        key_id: Option<String>,
        /// The request URL, with its query.
        #[arg(long)]
        url: String,
        /// The token, when it is not in the URL or a cookie (JWT: the bearer token).
        #[arg(long)]
        token: Option<String>,
        /// The request's `Cookie` field: `NAME=VALUE; …`.
        #[arg(long)]
        cookie: Option<String>,
        /// The client address.
        #[arg(long)]
        ip: Option<String>,
        /// A fixed clock (unix seconds).
        #[arg(long)]
        now: Option<u64>,
        /// Akamai: sha256 | sha1 | md5.
        #[arg(long)]
        algorithm: Option<String>,
        /// Akamai: the generator escaped URL tokens' paths early.
        #[arg(long)]
        escape_early: bool,
        /// JWT: required `iss`.
        #[arg(long)]
        issuer: Option<String>,
        /// JWT: required `aud`.
        #[arg(long)]
        audience: Option<String>,
        /// JWT: the claim that restricts paths.
        #[arg(long)]
        path_claim: Option<String>,
        /// JWT: the claim that binds the token to an address or CIDR.
        #[arg(long)]
        ip_claim: Option<String>,
    },
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn run(command: TokenCommand) -> ExitCode {
    match command {
        TokenCommand::Sign {
            format,
            key,
            key_id,
            url,
            expires,
            ttl,
            start,
            ip,
            prefix,
            acl,
            algorithm,
            id,
            data,
            resource,
            cookie,
            alg,
            sub,
            iss,
            aud,
            paths,
            now,
        } => {
            let now = now.unwrap_or_else(unix_now);
            let spec = SignSpec {
                key_id,
                url,
                expires: expires.unwrap_or(now + ttl.unwrap_or(3600)),
                start,
                ip,
                prefix,
                acl,
                algorithm,
                id,
                data,
                resource,
                cookie,
                alg,
                sub,
                iss,
                aud,
                paths,
            };
            match Key::parse(&key).and_then(|k| token::sign(format, &k, &spec)) {
                Ok(out) => {
                    println!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("edge token sign: {e}");
                    ExitCode::from(2)
                }
            }
        }
        TokenCommand::Verify {
            format,
            key,
            key_id,
            url,
            token,
            cookie,
            ip,
            now,
            algorithm,
            escape_early,
            issuer,
            audience,
            path_claim,
            ip_claim,
        } => {
            let spec = VerifySpec {
                key_id,
                url,
                token,
                cookie,
                ip,
                now: now.unwrap_or_else(unix_now),
                algorithm,
                escape_early,
                issuer,
                audience,
                path_claim,
                ip_claim,
                // The CLI checks the clock exactly, so `--now` answers what it says.
                skew_s: 0,
            };
            match Key::parse(&key).and_then(|k| token::verify(format, &k, &spec)) {
                Ok(Ok(v)) => {
                    println!("valid");
                    eprintln!(
                        "format={} subject={} expires={}",
                        v.format.name(),
                        v.subject.as_deref().unwrap_or("-"),
                        v.expires
                    );
                    ExitCode::SUCCESS
                }
                Ok(Err(f)) => {
                    println!("{}", f.reason);
                    if !f.detail.is_empty() {
                        eprintln!("{}", f.detail);
                    }
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("edge token verify: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
