//! Reading a Prometheus text exposition (an admin port's `/metrics`), strictly: a series that
//! is not there is an error, never 0. A test that expects a series to appear waits for it
//! ([`find`] in a [`crate::wait::wait_for`] probe); one that expects a series to be absent says
//! so ([`assert_absent`]).

/// `GET url` (an admin port's `/metrics`), as text; panics when it does not answer 200.
pub async fn scrape(url: &str) -> String {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// [`scrape`] of the admin port at `addr` (`host:port`).
pub async fn scrape_addr(addr: impl std::fmt::Display) -> String {
    scrape(&format!("http://{addr}/metrics")).await
}

/// The value of `series` (`name` or `name{label="value",...}`, labels as the exposition writes
/// them), or `None` when the text has no such series. For waits; an assertion reads [`metric`].
pub fn find(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{series}: value {v:?} is not a number: {e}"))
        })
}

/// The value of `series`; panics when the text has no such series, with the lines of its
/// family (or all of them) to show what was there instead.
pub fn metric(text: &str, series: &str) -> f64 {
    find(text, series).unwrap_or_else(|| {
        panic!(
            "no series {series} in the scraped metrics; the lines of its family:\n{}",
            family_lines(text, series)
        )
    })
}

/// Panics when the text has `series`: for a labelled series the code under test must not
/// have created (e.g. no request was ever denied).
pub fn assert_absent(text: &str, series: &str) {
    if let Some(value) = find(text, series) {
        panic!(
            "series {series} is present ({value}), expected none; its family:\n{}",
            family_lines(text, series)
        );
    }
}

/// The lines of `series`'s metric family (its `# HELP`/`# TYPE` and samples), or the whole
/// text when there are none.
fn family_lines(text: &str, series: &str) -> String {
    let name = series.split('{').next().unwrap_or(series);
    let family = name
        .strip_suffix("_total")
        .or_else(|| name.strip_suffix("_bucket"))
        .unwrap_or(name);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ");
            l.starts_with(family)
        })
        .collect();
    if lines.is_empty() {
        format!("(none; the whole text)\n{text}")
    } else {
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP irsa_webhook_requests Admission requests.\n\
        # TYPE irsa_webhook_requests counter\n\
        irsa_webhook_requests_total{result=\"mutated\"} 2\n\
        irsa_webhook_sa_cache_entries 3\n\
        # EOF\n";

    #[test]
    fn reads_a_series_with_and_without_labels() {
        assert_eq!(
            metric(TEXT, "irsa_webhook_requests_total{result=\"mutated\"}"),
            2.0
        );
        assert_eq!(metric(TEXT, "irsa_webhook_sa_cache_entries"), 3.0);
        // A prefix of a longer name is not the series.
        assert_eq!(find(TEXT, "irsa_webhook_sa_cache"), None);
    }

    #[test]
    #[should_panic(
        expected = "no series irsa_webhook_requests_total{result=\"denied\"} in the scraped metrics; the lines of its family:\n# HELP irsa_webhook_requests Admission requests."
    )]
    fn a_missing_series_fails_with_its_family() {
        metric(TEXT, "irsa_webhook_requests_total{result=\"denied\"}");
    }

    #[test]
    #[should_panic(expected = "series irsa_webhook_sa_cache_entries is present (3)")]
    fn assert_absent_fails_on_a_present_series() {
        assert_absent(TEXT, "irsa_webhook_sa_cache_entries");
    }
}
