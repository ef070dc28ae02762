//! api-gateway's routing table: which upstream serves a path, and the path
//! it is served at there.
//!
//! Prefixes match whole path segments: `/api/devices` and `/api/devices/7`
//! go to device-service, `/api/devicesX` goes nowhere.

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Route {
    /// The gateway path prefix (`/api/devices`).
    pub prefix: &'static str,
    /// The upstream's name (`device-service`).
    pub service: &'static str,
    /// What replaces `prefix` upstream (`/devices`; empty to strip it).
    pub target: &'static str,
    /// The environment variable with the upstream's base URL.
    pub env: &'static str,
    /// The base URL used when `env` is unset.
    pub default_url: &'static str,
}

/// The gateway's routes, first match wins.
pub const TABLE: &[Route] = &[
    Route {
        prefix: "/api/users",
        service: "user-service",
        target: "/users",
        env: "USER_SERVICE_URL",
        default_url: "http://127.0.0.1:30001",
    },
    Route {
        prefix: "/api/auth",
        service: "user-service",
        target: "/auth",
        env: "USER_SERVICE_URL",
        default_url: "http://127.0.0.1:30001",
    },
    Route {
        prefix: "/api/devices",
        service: "device-service",
        target: "/devices",
        env: "DEVICE_SERVICE_URL",
        default_url: "http://127.0.0.1:30002",
    },
    Route {
        prefix: "/api/apps",
        service: "app-service",
        target: "/apps",
        env: "APP_SERVICE_URL",
        default_url: "http://127.0.0.1:30003",
    },
    Route {
        prefix: "/api/billing",
        service: "billing-service",
        target: "",
        env: "BILLING_SERVICE_URL",
        default_url: "http://127.0.0.1:30005",
    },
    Route {
        prefix: "/api/notifications",
        service: "notification-service",
        target: "/notifications",
        env: "NOTIFICATION_SERVICE_URL",
        default_url: "http://127.0.0.1:30006",
    },
];

/// The index in `table` of the route for `path`, and the upstream path.
pub fn resolve(table: &[Route], path: &str) -> Option<(usize, String)> {
    table.iter().enumerate().find_map(|(i, route)| {
        let rest = path.strip_prefix(route.prefix)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        let upstream = format!("{}{rest}", route.target);
        Some((
            i,
            if upstream.is_empty() {
                "/".to_owned()
            } else {
                upstream
            },
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(path: &str) -> Option<(&'static str, String)> {
        resolve(TABLE, path).map(|(i, p)| (TABLE[i].service, p))
    }

    #[test]
    fn prefixes_map_to_upstream_paths() {
        assert_eq!(
            go("/api/users/me"),
            Some(("user-service", "/users/me".into()))
        );
        assert_eq!(
            go("/api/auth/login"),
            Some(("user-service", "/auth/login".into()))
        );
        assert_eq!(
            go("/api/devices"),
            Some(("device-service", "/devices".into()))
        );
        assert_eq!(
            go("/api/devices/d1"),
            Some(("device-service", "/devices/d1".into()))
        );
        assert_eq!(go("/api/apps"), Some(("app-service", "/apps".into())));
        assert_eq!(
            go("/api/billing/orders/o1"),
            Some(("billing-service", "/orders/o1".into()))
        );
        assert_eq!(go("/api/billing"), Some(("billing-service", "/".into())));
        assert_eq!(
            go("/api/notifications/send"),
            Some(("notification-service", "/notifications/send".into()))
        );
    }

    #[test]
    fn only_whole_segments_match() {
        assert_eq!(go("/api/devicesX"), None);
        assert_eq!(go("/api"), None);
        assert_eq!(go("/devices"), None);
    }
}
