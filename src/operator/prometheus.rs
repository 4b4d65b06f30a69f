//! A small client of the Prometheus HTTP API for the scaler: `/api/v1/query` (the current value)
//! and `/api/v1/query_range` (a history window on a fixed grid).
//!
//! Input: the server's base URL (`http://host:port[/prefix]`), a PromQL expression, times in
//! Unix seconds. Output: one series of values. The query must return exactly one series (wrap it
//! in `sum(...)` otherwise): several or none is an error, and every error names the query, so a
//! condition or Event built from it tells the user which query to fix.
//!
//! Plain HTTP only (Prometheus is reached in-cluster or on loopback); https URLs are refused with
//! a clear error.

use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// Largest Prometheus answer read (a scalar query's answer is a few hundred bytes; a range
/// query over the scaler's window a few hundred KB).
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// Errors of a Prometheus query; each names the query.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum QueryError {
    #[error("Prometheus URL {url:?} is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("query `{query}`: cannot reach Prometheus at {url}: {reason}")]
    Unreachable { query: String, url: String, reason: String },
    #[error("query `{query}`: Prometheus answered HTTP {status}: {error_type}: {error}")]
    Rejected {
        query: String,
        status: u16,
        error_type: String,
        error: String,
    },
    #[error("query `{query}`: the answer is not a Prometheus API response: {reason}")]
    Malformed { query: String, reason: String },
    #[error("query `{query}` returned no series (is the metric scraped? is the name right?)")]
    NoData { query: String },
    #[error("query `{query}` returned {count} series; it must return one (aggregate it, e.g. sum(...))")]
    SeveralSeries { query: String, count: usize },
    #[error("query `{query}` returned no usable sample in the window (all NaN or missing)")]
    NoSamples { query: String },
}

impl QueryError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            QueryError::BadUrl { .. } => "bad_url",
            QueryError::Unreachable { .. } => "unreachable",
            QueryError::Rejected { .. } => "rejected",
            QueryError::Malformed { .. } => "malformed",
            QueryError::NoData { .. } | QueryError::NoSamples { .. } => "no_data",
            QueryError::SeveralSeries { .. } => "several_series",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiData {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Option<Vec<(f64, String)>>,
}

/// A Prometheus server.
#[derive(Clone)]
pub struct Prometheus {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus").field("base", &self.base).finish()
    }
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters stay).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Prometheus {
    /// A client for `base_url` (e.g. `http://prometheus.monitoring:9090`).
    pub fn new(base_url: &str) -> Result<Self, QueryError> {
        let base = base_url.trim_end_matches('/').to_string();
        let bad = |reason: &str| QueryError::BadUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        if base.starts_with("https://") {
            return Err(bad("https is not supported yet; use the in-cluster http address"));
        }
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(bad("it must start with http:// and name a host"));
        }
        base.parse::<hyper::Uri>().map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout: Duration::from_secs(10),
        })
    }

    async fn get(&self, query: &str, path_and_params: &str) -> Result<ApiData, QueryError> {
        let url = format!("{}{}", self.base, path_and_params);
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| QueryError::BadUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let unreachable = |reason: String| QueryError::Unreachable {
            query: query.to_string(),
            url: self.base.clone(),
            reason,
        };
        let response = tokio::time::timeout(self.timeout, self.client.get(uri))
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = tokio::time::timeout(
            self.timeout,
            super::http::capped_body(response.into_body(), MAX_RESPONSE_BYTES),
        )
        .await
        .map_err(|_| unreachable(format!("body not complete within {:?}", self.timeout)))?
        .map_err(unreachable)?;
        parse_response(query, status, &body)
    }

    /// The query's current value (an instant query at `time`, Unix seconds).
    pub async fn query(&self, query: &str, time: f64) -> Result<f64, QueryError> {
        let params = format!("/api/v1/query?query={}&time={time:.3}", encode_component(query));
        let data = self.get(query, &params).await?;
        let series = one_series(query, &data)?;
        let value = series
            .value
            .as_ref()
            .and_then(|(_, v)| parse_sample(v))
            .ok_or_else(|| QueryError::NoSamples {
                query: query.to_string(),
            })?;
        Ok(value)
    }

    /// The query evaluated at `start, start + step, …, end` (Unix seconds). Returns one value per
    /// grid point; a missing or NaN point repeats the previous value (points before the first
    /// sample are dropped, so the result may be shorter than the grid).
    pub async fn query_range(&self, query: &str, start: f64, end: f64, step: f64) -> Result<Vec<f64>, QueryError> {
        let params = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            encode_component(query)
        );
        let data = self.get(query, &params).await?;
        let series = one_series(query, &data)?;
        let samples = series.values.unwrap_or_default();
        Ok(on_grid(&samples, start, end, step)).and_then(|v: Vec<f64>| {
            if v.is_empty() {
                Err(QueryError::NoSamples {
                    query: query.to_string(),
                })
            } else {
                Ok(v)
            }
        })
    }
}

impl Prometheus {
    /// A range query whose result may hold many series (the anomaly loop's): each series keyed
    /// by the values of `labels` (joined by `/`; a series missing one of them is left out), its
    /// samples as `(time, value)` with NaN and unparsable samples dropped. No series is not an
    /// error (an empty map).
    pub async fn query_range_by(
        &self,
        query: &str,
        labels: &[&str],
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<std::collections::BTreeMap<String, Vec<(f64, f64)>>, QueryError> {
        let params = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            encode_component(query)
        );
        let data = self.get(query, &params).await?;
        by_labels(query, &data, labels)
    }
}

fn by_labels(
    query: &str,
    data: &ApiData,
    labels: &[&str],
) -> Result<std::collections::BTreeMap<String, Vec<(f64, f64)>>, QueryError> {
    if data.result_type != "matrix" {
        return Err(QueryError::Malformed {
            query: query.to_string(),
            reason: format!("result type {:?} is not a range of series", data.result_type),
        });
    }
    let series: Vec<Series> = serde_json::from_value(data.result.clone()).map_err(|e| QueryError::Malformed {
        query: query.to_string(),
        reason: e.to_string(),
    })?;
    let mut out = std::collections::BTreeMap::new();
    for s in series {
        let Some(key) = labels
            .iter()
            .map(|l| s.metric.get(*l).cloned())
            .collect::<Option<Vec<String>>>()
        else {
            continue;
        };
        let points: Vec<(f64, f64)> = s
            .values
            .unwrap_or_default()
            .iter()
            .filter_map(|(t, v)| parse_sample(v).map(|v| (*t, v)))
            .collect();
        out.insert(key.join("/"), points);
    }
    Ok(out)
}

fn parse_sample(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn parse_response(query: &str, status: u16, body: &[u8]) -> Result<ApiData, QueryError> {
    let parsed: ApiResponse = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            let snippet: String = String::from_utf8_lossy(body).chars().take(200).collect();
            return Err(QueryError::Malformed {
                query: query.to_string(),
                reason: format!("HTTP {status}, {e}: {snippet:?}"),
            });
        }
    };
    if parsed.status != "success" || !(200..300).contains(&status) {
        return Err(QueryError::Rejected {
            query: query.to_string(),
            status,
            error_type: parsed.error_type.unwrap_or_else(|| "unknown".into()),
            error: parsed.error.unwrap_or_else(|| format!("status {:?}", parsed.status)),
        });
    }
    parsed.data.ok_or_else(|| QueryError::Malformed {
        query: query.to_string(),
        reason: "a success without data".into(),
    })
}

fn one_series(query: &str, data: &ApiData) -> Result<Series, QueryError> {
    let malformed = |reason: String| QueryError::Malformed {
        query: query.to_string(),
        reason,
    };
    match data.result_type.as_str() {
        "scalar" => {
            // [time, "value"]
            let pair: (f64, String) =
                serde_json::from_value(data.result.clone()).map_err(|e| malformed(e.to_string()))?;
            Ok(Series {
                metric: Default::default(),
                value: Some(pair),
                values: None,
            })
        }
        "vector" | "matrix" => {
            let mut series: Vec<Series> =
                serde_json::from_value(data.result.clone()).map_err(|e| malformed(e.to_string()))?;
            match series.len() {
                0 => Err(QueryError::NoData {
                    query: query.to_string(),
                }),
                1 => Ok(series.remove(0)),
                count => Err(QueryError::SeveralSeries {
                    query: query.to_string(),
                    count,
                }),
            }
        }
        other => Err(malformed(format!("result type {other:?} is not a number series"))),
    }
}

/// The samples on the grid `start + k·step ≤ end`: exact timestamps (Prometheus evaluates a
/// range query exactly there), gaps and NaNs filled with the previous value, leading gaps dropped.
fn on_grid(samples: &[(f64, String)], start: f64, end: f64, step: f64) -> Vec<f64> {
    if !(step > 0.0 && end >= start) {
        return Vec::new();
    }
    let n = ((end - start) / step + 1e-6).floor() as usize + 1;
    let mut grid: Vec<Option<f64>> = vec![None; n];
    for (t, v) in samples {
        let k = ((t - start) / step).round();
        if k >= 0.0 && (k as usize) < n && ((start + k * step) - t).abs() < step / 2.0 {
            grid[k as usize] = parse_sample(v);
        }
    }
    let mut out = Vec::with_capacity(n);
    let mut last = None;
    for g in grid {
        if let Some(v) = g {
            last = Some(v);
        }
        if let Some(v) = last {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one HTTP response with a `size`-byte JSON body on a loopback port; returns its URL.
    async fn one_answer(size: usize) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[]}},"pad":"{}"}}"#,
                "x".repeat(size)
            );
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
        });
        url
    }

    #[tokio::test]
    async fn an_answer_over_the_size_cap_is_an_error_naming_the_limit_not_an_allocation() {
        // Positive control: a small answer is read (and reports no data).
        let small = Prometheus::new(&one_answer(10).await).unwrap();
        assert!(matches!(small.query("up", 0.0).await, Err(QueryError::NoData { .. })));
        let big = Prometheus::new(&one_answer(MAX_RESPONSE_BYTES + 1).await).unwrap();
        let err = big.query("up", 0.0).await.unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("larger than {MAX_RESPONSE_BYTES} bytes")),
            "{err}"
        );
    }

    #[test]
    fn query_parameters_are_percent_encoded() {
        assert_eq!(
            encode_component("sum(rate(x{a=\"b\"}[1m]))"),
            "sum%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29"
        );
        assert_eq!(encode_component("a b+c"), "a%20b%2Bc");
    }

    #[test]
    fn a_range_result_is_put_on_the_grid_with_gaps_carried_forward() {
        let s = |t: f64, v: &str| (t, v.to_string());
        let samples = vec![s(102.0, "1"), s(104.0, "NaN"), s(106.0, "3"), s(110.0, "4")];
        assert_eq!(on_grid(&samples, 100.0, 110.0, 2.0), vec![1.0, 1.0, 3.0, 3.0, 4.0]);
        assert!(on_grid(&samples, 100.0, 90.0, 2.0).is_empty());
    }

    #[test]
    fn an_error_answer_names_the_query_and_the_prometheus_message() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 8"}"#;
        let e = parse_response("demand{", 400, body).err().unwrap();
        let text = e.to_string();
        assert!(text.contains("`demand{`") && text.contains("parse error"), "{text}");
        let e = parse_response("q", 200, b"<html>").err().unwrap();
        assert!(matches!(e, QueryError::Malformed { .. }), "{e}");
    }

    #[test]
    fn a_query_must_return_exactly_one_series() {
        let data = |result: &str| ApiData {
            result_type: "vector".into(),
            result: serde_json::from_str(result).unwrap(),
        };
        let e = one_series("up", &data("[]")).err().unwrap();
        assert!(e.to_string().contains("returned no series"), "{e}");
        let two = r#"[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"2"]}]"#;
        let e = one_series("up", &data(two)).err().unwrap();
        assert!(e.to_string().contains("2 series"), "{e}");
        let one = one_series("up", &data(r#"[{"metric":{},"value":[1,"2.5"]}]"#)).unwrap();
        assert_eq!(one.value.unwrap().1, "2.5");
    }

    #[test]
    fn a_many_series_range_is_keyed_by_its_labels_and_series_without_them_are_left_out() {
        let data = ApiData {
            result_type: "matrix".into(),
            result: serde_json::json!([
                {"metric": {"node": "a"}, "values": [[1, "1"], [2, "NaN"], [3, "3"]]},
                {"metric": {"node": "b"}, "values": [[1, "5"]]},
                {"metric": {"instance": "x"}, "values": [[1, "9"]]}
            ]),
        };
        let m = by_labels("q", &data, &["node"]).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["a"], vec![(1.0, 1.0), (3.0, 3.0)]);
        assert_eq!(m["b"], vec![(1.0, 5.0)]);
        let vector = ApiData {
            result_type: "vector".into(),
            result: serde_json::json!([]),
        };
        assert!(matches!(
            by_labels("q", &vector, &["node"]),
            Err(QueryError::Malformed { .. })
        ));
    }

    #[test]
    fn urls_that_are_not_plain_http_are_refused() {
        assert!(
            Prometheus::new("https://p:9090")
                .err()
                .unwrap()
                .to_string()
                .contains("https")
        );
        assert!(Prometheus::new("p:9090").is_err());
        assert!(Prometheus::new("http://").is_err());
    }
}
