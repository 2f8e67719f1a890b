//! The demo contract, every scenario against every setup. A new framework
//! or store is one more line at the bottom.

use session_tests::{scenarios, Framework, Setup};

macro_rules! contract {
    ($($suite:ident => $setup:expr;)*) => {$(
        mod $suite {
            use super::*;

            const SETUP: Setup = $setup;

            contract!(@tests health counter key_values bad_json login_and_whoami flashes
                remember_me cookie_attributes logout bad_tokens page concurrent_writes
                key_rotation contended_writers contended_counter cache_headers too_large
                user_sessions max_sessions_per_user);
        }
    )*};
    (@tests $($scenario:ident)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $scenario() {
            scenarios::$scenario(&SETUP).await;
        }
    )*};
}

contract! {
    axum_memory => Setup::new(Framework::Axum, "memory", "cookie");
    axum_cookie => Setup::new(Framework::Axum, "cookie", "cookie");
    axum_memory_header => Setup::new(Framework::Axum, "memory", "header");
    axum_cookie_header => Setup::new(Framework::Axum, "cookie", "header");
    axum_memcache => Setup::new(Framework::Axum, "memcache", "cookie");
    axum_memcache_header => Setup::new(Framework::Axum, "memcache", "header");
    axum_file => Setup::new(Framework::Axum, "file", "cookie");
    axum_cascade => Setup::new(Framework::Axum, "cascade", "cookie");
    actix_memory => Setup::new(Framework::Actix, "memory", "cookie");
    actix_cookie => Setup::new(Framework::Actix, "cookie", "cookie");
    actix_memory_header => Setup::new(Framework::Actix, "memory", "header");
    actix_memcache => Setup::new(Framework::Actix, "memcache", "cookie");
    actix_cascade => Setup::new(Framework::Actix, "cascade", "cookie");
    rocket_memory => Setup::new(Framework::Rocket, "memory", "cookie");
    rocket_cookie => Setup::new(Framework::Rocket, "cookie", "cookie");
    rocket_memory_header => Setup::new(Framework::Rocket, "memory", "header");
    rocket_memcache => Setup::new(Framework::Rocket, "memcache", "cookie");
    rocket_cascade => Setup::new(Framework::Rocket, "cascade", "cookie");
    axum_redis => Setup::new(Framework::Axum, "redis", "cookie");
    actix_redis => Setup::new(Framework::Actix, "redis", "cookie");
    rocket_redis => Setup::new(Framework::Rocket, "redis", "header");
    axum_postgres => Setup::new(Framework::Axum, "postgres", "cookie");
    actix_postgres => Setup::new(Framework::Actix, "postgres", "header");
    rocket_postgres => Setup::new(Framework::Rocket, "postgres", "cookie");
    axum_memory_memcache_postgres => Setup::new(Framework::Axum, "memory+memcache+postgres", "cookie");
    axum_cookie_redis_index => Setup::new(Framework::Axum, "cookie", "cookie").user_index("redis");
}

/// The setups the user-sessions routes need beyond those above: every
/// framework on every store, cookie sessions with a shared index.
macro_rules! user_sessions_contract {
    ($($suite:ident => $setup:expr;)*) => {$(
        mod $suite {
            use super::*;

            const SETUP: Setup = $setup;

            contract!(@tests login_and_whoami logout key_rotation user_sessions
                max_sessions_per_user);
        }
    )*};
}

user_sessions_contract! {
    actix_memory_memcache_postgres => Setup::new(Framework::Actix, "memory+memcache+postgres", "header");
    rocket_memory_memcache_postgres => Setup::new(Framework::Rocket, "memory+memcache+postgres", "cookie");
    actix_cookie_redis_index => Setup::new(Framework::Actix, "cookie", "header").user_index("redis");
    rocket_cookie_redis_index => Setup::new(Framework::Rocket, "cookie", "cookie").user_index("redis");
    axum_cookie_postgres_index => Setup::new(Framework::Axum, "cookie", "cookie").user_index("postgres");
    actix_cookie_memcache_index => Setup::new(Framework::Actix, "cookie", "cookie").user_index("memcache");
    actix_file => Setup::new(Framework::Actix, "file", "cookie");
    rocket_file => Setup::new(Framework::Rocket, "file", "header");
}
