//! Owns robots.txt: fetched once per host through the same polite fetcher, cached, and asked
//! before every html page fetch (RFC 9309: 4xx means no rules; an unreachable file means
//! "disallow" for a while).

use crate::config::{host_key, Source};
use crate::fetch::{Conditional, FetchError, FetchOutcome, Fetcher};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

/// How long a fetched robots.txt is trusted (RFC 9309 §2.4 suggests at most 24 hours).
const FRESH: Duration = Duration::from_secs(24 * 3600);
/// How long an unreachable robots.txt blocks the host before it is tried again.
const UNREACHABLE: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
enum Rules {
    AllowAll,
    DisallowAll(String),
    Parsed(texting_robots::Robot),
}

/// Rules of one host, when they were fetched and for how long they hold.
struct Cached {
    at: Instant,
    ttl: Duration,
    rules: Arc<Rules>,
}

#[derive(Default)]
pub struct Robots {
    cache: Mutex<HashMap<String, Cached>>,
}

/// Why a URL may not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// The product token robots.txt groups name: "tingfeng" of "tingfeng/0.1 (+…)".
fn agent_token(user_agent: &str) -> &str {
    user_agent
        .split(['/', ' '])
        .next()
        .filter(|t| !t.is_empty())
        .unwrap_or(user_agent)
}

impl Robots {
    /// Ok when `url` may be fetched for `source`.
    pub async fn check(&self, fetcher: &Fetcher, source: &Source, url: &Url) -> Result<(), Denied> {
        if !source.robots {
            return Ok(());
        }
        let key = host_key(url);
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(&key)
                .filter(|c| c.at.elapsed() < c.ttl)
                .map(|c| c.rules.clone())
        };
        let rules = match cached {
            Some(r) => r,
            None => {
                let (rules, ttl) = self.load(fetcher, source, url).await;
                let rules = Arc::new(rules);
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    key,
                    Cached {
                        at: Instant::now(),
                        ttl,
                        rules: rules.clone(),
                    },
                );
                rules
            }
        };
        match rules.as_ref() {
            Rules::AllowAll => Ok(()),
            Rules::DisallowAll(why) => Err(Denied(why.clone())),
            Rules::Parsed(robot) => {
                if robot.allowed(url.as_str()) {
                    Ok(())
                } else {
                    Err(Denied(format!("robots.txt disallows {}", url.path())))
                }
            }
        }
    }

    async fn load(&self, fetcher: &Fetcher, source: &Source, url: &Url) -> (Rules, Duration) {
        let mut robots_url = url.clone();
        robots_url.set_path("/robots.txt");
        robots_url.set_query(None);
        robots_url.set_fragment(None);
        let agent = agent_token(&source.user_agent).to_string();
        match fetcher
            .fetch_url(source, robots_url.as_str(), &Conditional::default())
            .await
        {
            Ok(FetchOutcome::Body(f)) => match texting_robots::Robot::new(&agent, &f.body) {
                Ok(robot) => (Rules::Parsed(robot), FRESH),
                // Unparseable rules say nothing we could honour.
                Err(_) => (Rules::AllowAll, FRESH),
            },
            Ok(FetchOutcome::NotModified) => (Rules::AllowAll, FRESH),
            Err(FetchError::Status { status, .. }) if (400..500).contains(&status) => {
                (Rules::AllowAll, FRESH)
            }
            Err(e) => (
                Rules::DisallowAll(format!(
                    "robots.txt unreachable ({e}); not fetching this host for now"
                )),
                UNREACHABLE,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_tokens() {
        assert_eq!(agent_token("tingfeng/0.1 (+ops)"), "tingfeng");
        assert_eq!(agent_token("Mozilla/5.0"), "Mozilla");
    }

    #[test]
    fn rules_follow_the_agent_group() {
        let txt = b"User-agent: *\nDisallow: /private/\n\nUser-agent: tingfeng\nDisallow: /forum/\nAllow: /forum/open/\n";
        let r = texting_robots::Robot::new("tingfeng", txt).unwrap();
        assert!(!r.allowed("https://a.cn/forum/list.html"));
        assert!(r.allowed("https://a.cn/forum/open/list.html"));
        assert!(
            r.allowed("https://a.cn/private/x"),
            "our own group replaces *"
        );
    }
}
