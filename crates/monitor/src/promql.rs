//! PromQL evaluated over the [`Store`]: what the alert rules need, with
//! Prometheus's meaning.
//!
//! - Selectors: instant (the newest sample within five minutes) and range
//!   (`(t - range, t]`), with `=`, `!=`, `=~`, `!~` and `offset`.
//! - Functions: `rate`, `irate`, `increase`, `delta`, `idelta`, `deriv`,
//!   `predict_linear`, `changes`, `resets`, `*_over_time` (avg, min, max,
//!   sum, count, last, stddev, stdvar, quantile, present),
//!   `histogram_quantile`, `absent`, `absent_over_time`, `abs`, `ceil`,
//!   `floor`, `round`, `sqrt`, `exp`, `ln`, `log2`, `log10`, `clamp`,
//!   `clamp_min`, `clamp_max`, `scalar`, `vector`, `time`, `label_replace`
//!   (what the dashboard uses to name the lines of one chart), and botfleet's
//!   `anomalous` (see `botfleet_config::promql`).
//! - Aggregations `sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`,
//!   `stdvar`, `topk`, `bottomk`, `quantile`, by or without labels.
//! - Arithmetic, comparisons (filtering or `bool`) and `and`/`or`/`unless`,
//!   between scalars and vectors, with `on`/`ignoring` and
//!   `group_left`/`group_right`.
//!
//! Anything else (subqueries, `@`, `label_join`, ...) is an error that
//! names it, found when a rule is checked, not when it first runs.

use std::collections::HashMap;

use botfleet_config::promql::{ANOMALOUS, Expr};
use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::ast::{
    AggregateExpr, BinaryExpr, LabelModifier, Offset, VectorMatchCardinality,
};
use promql_parser::parser::{Call, MatrixSelector, VectorSelector};

use crate::anomaly::{Detector, Direction, Settings};
use crate::store::{Store, least_squares};

/// How far back an instant selector looks for a sample (Prometheus's
/// default lookback).
pub const LOOKBACK: i64 = 300;

/// A series' labels, sorted by name, `__name__` included while it holds.
pub type Labels = Vec<(String, String)>;

/// A range vector: samples per series.
pub type Matrix = Vec<(Labels, Vec<(i64, f64)>)>;

/// A `*_over_time` function: a series' samples to one value.
type OverTime = fn(&[(i64, f64)]) -> Option<f64>;

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Its labels.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// What an expression evaluates to.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// One value per series.
    Vector(Vec<Sample>),
    /// Samples per series (a range selector).
    Matrix(Matrix),
    /// A string literal.
    String(String),
}

/// State that lives from one evaluation of an expression to the next:
/// one anomaly detector per `anomalous` call and series.
#[derive(Debug, Default)]
pub struct State {
    detectors: HashMap<(usize, Labels), Detector>,
}

/// Evaluates `expr` at `t` (Unix seconds) over `store`; `state` carries the
/// anomaly detectors of this expression between evaluations.
pub fn eval(store: &Store, expr: &Expr, t: i64, state: &mut State) -> Result<Value, String> {
    let mut cx = Cx {
        store,
        state,
        calls: 0,
    };
    cx.eval(expr, t)
}

/// Prometheus's `label_replace`: where `src`'s value matches `regex` whole,
/// `dst` becomes `replacement` with the groups expanded (`$1`, `${name}`),
/// or goes when that is empty; other samples pass unchanged.
fn label_replace(
    v: Vec<Sample>,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
) -> Result<Vec<Sample>, String> {
    let re = regex::Regex::new(&format!("^(?s:{regex})$"))
        .map_err(|e| format!("label_replace(): invalid regex {regex:?}: {e}"))?;
    let valid = dst
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && dst.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!("label_replace(): invalid label name {dst:?}"));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        let value = s
            .labels
            .iter()
            .find(|(k, _)| k == src)
            .map_or("", |(_, v)| v.as_str());
        if let Some(caps) = re.captures(value) {
            let mut res = String::new();
            caps.expand(replacement, &mut res);
            s.labels.retain(|(k, _)| k != dst);
            if !res.is_empty() {
                s.labels.push((dst.to_owned(), res));
                s.labels.sort();
            }
        }
        out.push(s);
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    if out.windows(2).any(|w| w[0].labels == w[1].labels) {
        return Err("label_replace(): the result has two series with the same labels".to_owned());
    }
    Ok(out)
}

/// Checks that `expr` uses only what [`eval`] supports, so a rule fails
/// when it is loaded rather than at its first evaluation.
pub fn check(expr: &Expr) -> Result<(), String> {
    let store = Store::new(0);
    eval(&store, expr, 0, &mut State::default()).map(|_| ())
}

struct Cx<'a> {
    store: &'a Store,
    state: &'a mut State,
    /// `anomalous` calls met so far in this evaluation (their identity).
    calls: usize,
}

const NAME: &str = "__name__";

impl Cx<'_> {
    fn eval(&mut self, expr: &Expr, t: i64) -> Result<Value, String> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|s| Sample {
                            labels: drop_name(s.labels),
                            value: -s.value,
                        })
                        .collect(),
                )),
                _ => Err("unary minus applies to numbers and instant vectors only".to_owned()),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant(vs, t)?)),
            Expr::MatrixSelector(ms) => Ok(Value::Matrix(self.range(ms, t)?)),
            Expr::Call(call) => self.call(call, t),
            Expr::Aggregate(a) => self.aggregate(a, t),
            Expr::Binary(b) => self.binary(b, t),
            Expr::Subquery(_) => Err("subqueries are not supported".to_owned()),
            Expr::Extension(_) => Err("extension expressions are not supported".to_owned()),
        }
    }

    fn selected(&self, vs: &VectorSelector, start: i64, end: i64) -> Result<Matrix, String> {
        if vs.at.is_some() {
            return Err("the @ modifier is not supported".to_owned());
        }
        let found = self
            .store
            .select(|name, labels| selects(vs, name, labels), start, end);
        Ok(found
            .into_iter()
            .map(|(name, labels, points)| (with_name(&name, labels), points))
            .collect())
    }

    fn instant(&self, vs: &VectorSelector, t: i64) -> Result<Vec<Sample>, String> {
        let t = t - offset(vs.offset.as_ref());
        let mut out: Vec<Sample> = self
            .selected(vs, t - LOOKBACK, t)?
            .into_iter()
            .filter_map(|(labels, points)| {
                points.last().map(|&(_, value)| Sample { labels, value })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn range(&self, ms: &MatrixSelector, t: i64) -> Result<Matrix, String> {
        let t = t - offset(ms.vs.offset.as_ref());
        let range = ms.range.as_secs() as i64;
        if range < 1 {
            return Err("a range must be at least 1s".to_owned());
        }
        let mut out = self.selected(&ms.vs, t - range, t)?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn call(&mut self, call: &Call, t: i64) -> Result<Value, String> {
        let name = call.func.name;
        let args = &call.args.args;
        let arg = |i: usize| -> Result<&Expr, String> {
            args.get(i)
                .map(AsRef::as_ref)
                .ok_or_else(|| format!("{name}() needs argument {}", i + 1))
        };
        match name {
            "time" => return Ok(Value::Scalar(t as f64)),
            "vector" => {
                let v = self.scalar(arg(0)?, t)?;
                return Ok(Value::Vector(vec![Sample {
                    labels: Vec::new(),
                    value: v,
                }]));
            }
            "scalar" => {
                let v = self.vector(arg(0)?, t)?;
                return Ok(Value::Scalar(if v.len() == 1 {
                    v[0].value
                } else {
                    f64::NAN
                }));
            }
            "absent" => {
                let v = self.vector(arg(0)?, t)?;
                return Ok(Value::Vector(absent(v.is_empty(), arg(0)?)));
            }
            "absent_over_time" => {
                let m = self.matrix(arg(0)?, t)?;
                return Ok(Value::Vector(absent(m.is_empty(), arg(0)?)));
            }
            "histogram_quantile" => {
                let q = self.scalar(arg(0)?, t)?;
                let v = self.vector(arg(1)?, t)?;
                return Ok(Value::Vector(histogram_quantile(q, v)));
            }
            "label_replace" => {
                let v = self.vector(arg(0)?, t)?;
                let mut text = |i: usize| -> Result<String, String> {
                    match self.eval(arg(i)?, t)? {
                        Value::String(s) => Ok(s),
                        _ => Err(format!(
                            "label_replace(): argument {} must be a string",
                            i + 1
                        )),
                    }
                };
                let (dst, replacement, src, regex) = (text(1)?, text(2)?, text(3)?, text(4)?);
                return label_replace(v, &dst, &replacement, &src, &regex).map(Value::Vector);
            }
            n if n == ANOMALOUS => {
                let id = self.calls;
                self.calls += 1;
                let v = self.vector(arg(0)?, t)?;
                let floor = self.scalar(arg(1)?, t)?;
                let direction = match self.eval(arg(2)?, t)? {
                    Value::String(s) => match s.as_str() {
                        "up" => Direction::Up,
                        "down" => Direction::Down,
                        "both" => Direction::Both,
                        other => {
                            return Err(format!(
                                "anomalous(): direction must be \"up\", \"down\" or \"both\", not {other:?}"
                            ));
                        }
                    },
                    _ => return Err("anomalous(): the direction must be a string".to_owned()),
                };
                let settings = Settings {
                    floor,
                    direction,
                    ..Settings::default()
                };
                let mut out = Vec::new();
                for s in v {
                    let labels = drop_name(s.labels);
                    let detector = self
                        .state
                        .detectors
                        .entry((id, labels.clone()))
                        .or_insert_with(|| Detector::new(settings));
                    if detector.observe(s.value) {
                        out.push(Sample {
                            labels,
                            value: s.value,
                        });
                    }
                }
                return Ok(Value::Vector(out));
            }
            _ => {}
        }
        // Functions of a range vector.
        let over: Option<OverTime> = match name {
            "avg_over_time" => Some(|p| Some(mean(p))),
            "min_over_time" => Some(|p| p.iter().map(|x| x.1).reduce(f64::min)),
            "max_over_time" => Some(|p| p.iter().map(|x| x.1).reduce(f64::max)),
            "sum_over_time" => Some(|p| Some(p.iter().map(|x| x.1).sum())),
            "count_over_time" => Some(|p| Some(p.len() as f64)),
            "last_over_time" => Some(|p| p.last().map(|x| x.1)),
            "present_over_time" => Some(|_| Some(1.0)),
            "stddev_over_time" => Some(|p| Some(variance(p).sqrt())),
            "stdvar_over_time" => Some(|p| Some(variance(p))),
            "changes" => Some(|p| Some(p.windows(2).filter(|w| w[0].1 != w[1].1).count() as f64)),
            "resets" => Some(|p| Some(p.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64)),
            "deriv" => Some(|p| regression(p, p.last()?.0).map(|(slope, _)| slope)),
            "irate" => Some(|p| {
                let [.., a, b] = p else { return None };
                let grew = if b.1 < a.1 { b.1 } else { b.1 - a.1 };
                Some(grew / (b.0 - a.0) as f64)
            }),
            "idelta" => Some(|p| {
                let [.., a, b] = p else { return None };
                Some(b.1 - a.1)
            }),
            _ => None,
        };
        if let Some(f) = over {
            let m = self.matrix(arg(0)?, t)?;
            return Ok(Value::Vector(
                m.into_iter()
                    .filter_map(|(labels, points)| {
                        let value = f(&points)?;
                        Some(Sample {
                            labels: if name == "last_over_time" {
                                labels
                            } else {
                                drop_name(labels)
                            },
                            value,
                        })
                    })
                    .collect(),
            ));
        }
        match name {
            "rate" | "increase" | "delta" => {
                let Expr::MatrixSelector(ms) = arg(0)? else {
                    // Says what is wrong inside first (a subquery, say).
                    self.eval(arg(0)?, t)?;
                    return Err(format!("{name}() takes a range selector"));
                };
                let range = ms.range.as_secs() as i64;
                let end = t - offset(ms.vs.offset.as_ref());
                let m = self.range(ms, t)?;
                Ok(Value::Vector(
                    m.into_iter()
                        .filter_map(|(labels, points)| {
                            let value = extrapolated(&points, end - range, end, name != "delta")?;
                            Some(Sample {
                                labels: drop_name(labels),
                                value: if name == "rate" {
                                    value / range as f64
                                } else {
                                    value
                                },
                            })
                        })
                        .collect(),
                ))
            }
            "predict_linear" => {
                let ahead = self.scalar(arg(1)?, t)?;
                let m = self.matrix(arg(0)?, t)?;
                Ok(Value::Vector(
                    m.into_iter()
                        .filter_map(|(labels, points)| {
                            let (slope, at_t) = regression(&points, t)?;
                            Some(Sample {
                                labels: drop_name(labels),
                                value: at_t + slope * ahead,
                            })
                        })
                        .collect(),
                ))
            }
            "quantile_over_time" => {
                let q = self.scalar(arg(0)?, t)?;
                let m = self.matrix(arg(1)?, t)?;
                Ok(Value::Vector(
                    m.into_iter()
                        .map(|(labels, points)| Sample {
                            labels: drop_name(labels),
                            value: quantile(q, points.iter().map(|p| p.1).collect()),
                        })
                        .collect(),
                ))
            }
            "clamp" | "clamp_min" | "clamp_max" => {
                let v = self.vector(arg(0)?, t)?;
                let (lo, hi) = match name {
                    "clamp" => (self.scalar(arg(1)?, t)?, self.scalar(arg(2)?, t)?),
                    "clamp_min" => (self.scalar(arg(1)?, t)?, f64::INFINITY),
                    _ => (f64::NEG_INFINITY, self.scalar(arg(1)?, t)?),
                };
                if lo > hi {
                    return Ok(Value::Vector(Vec::new()));
                }
                Ok(map_vector(v, |x| x.max(lo).min(hi)))
            }
            _ => {
                let f: fn(f64) -> f64 = match name {
                    "abs" => f64::abs,
                    "ceil" => f64::ceil,
                    "floor" => f64::floor,
                    "round" => f64::round,
                    "sqrt" => f64::sqrt,
                    "exp" => f64::exp,
                    "ln" => f64::ln,
                    "log2" => f64::log2,
                    "log10" => f64::log10,
                    other => return Err(format!("the function {other}() is not supported")),
                };
                if args.len() > 1 {
                    return Err(format!("{name}() with a second argument is not supported"));
                }
                let v = self.vector(arg(0)?, t)?;
                Ok(map_vector(v, f))
            }
        }
    }

    fn aggregate(&mut self, a: &AggregateExpr, t: i64) -> Result<Value, String> {
        let op = a.op.to_string();
        const SUPPORTED: [&str; 11] = [
            "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "quantile", "topk",
            "bottomk",
        ];
        if !SUPPORTED.contains(&op.as_str()) {
            return Err(format!("the aggregation {op} is not supported"));
        }
        let param = match &a.param {
            Some(p) => Some(self.scalar(p, t)?),
            None => None,
        };
        let v = self.vector(&a.expr, t)?;
        let key = |labels: &Labels| -> Labels {
            match &a.modifier {
                Some(LabelModifier::Include(by)) => labels
                    .iter()
                    .filter(|(k, _)| by.labels.iter().any(|l| l == k))
                    .cloned()
                    .collect(),
                Some(LabelModifier::Exclude(without)) => labels
                    .iter()
                    .filter(|(k, _)| k != NAME && !without.labels.iter().any(|l| l == k))
                    .cloned()
                    .collect(),
                None => Vec::new(),
            }
        };
        let mut groups: Vec<(Labels, Vec<Sample>)> = Vec::new();
        for s in v {
            let k = key(&s.labels);
            match groups.iter_mut().find(|(g, _)| *g == k) {
                Some((_, members)) => members.push(s),
                None => groups.push((k, vec![s])),
            }
        }
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        for (labels, mut members) in groups {
            let values: Vec<f64> = members.iter().map(|s| s.value).collect();
            let n = values.len() as f64;
            let value = match op.as_str() {
                "sum" => values.iter().sum(),
                "avg" => values.iter().sum::<f64>() / n,
                "min" => values.iter().copied().fold(f64::INFINITY, f64::min),
                "max" => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                "count" => n,
                "group" => 1.0,
                "stddev" | "stdvar" => {
                    let m = values.iter().sum::<f64>() / n;
                    let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
                    if op == "stddev" { var.sqrt() } else { var }
                }
                "quantile" => quantile(param.unwrap_or(f64::NAN), values),
                "topk" | "bottomk" => {
                    let k = param.unwrap_or(0.0).max(0.0) as usize;
                    if op == "topk" {
                        members.sort_by(|a, b| b.value.total_cmp(&a.value));
                    } else {
                        members.sort_by(|a, b| a.value.total_cmp(&b.value));
                    }
                    out.extend(members.into_iter().take(k));
                    continue;
                }
                other => return Err(format!("the aggregation {other} is not supported")),
            };
            out.push(Sample { labels, value });
        }
        Ok(Value::Vector(out))
    }

    fn binary(&mut self, b: &BinaryExpr, t: i64) -> Result<Value, String> {
        let op = b.op.to_string();
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let comparison = b.op.is_comparison_operator();
        if b.op.is_set_operator() {
            let (Value::Vector(l), Value::Vector(r)) = (lhs, rhs) else {
                return Err(format!("`{op}` is defined between instant vectors only"));
            };
            return Ok(Value::Vector(set_op(&op, l, r, b)));
        }
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                if comparison && !return_bool {
                    return Err("comparisons between scalars must use bool".to_owned());
                }
                Ok(Value::Scalar(apply(&op, l, r).unwrap_or(0.0)))
            }
            (Value::Vector(v), Value::Scalar(s)) => Ok(Value::Vector(scalar_op(
                &op,
                comparison,
                return_bool,
                v,
                s,
                false,
            ))),
            (Value::Scalar(s), Value::Vector(v)) => Ok(Value::Vector(scalar_op(
                &op,
                comparison,
                return_bool,
                v,
                s,
                true,
            ))),
            (Value::Vector(l), Value::Vector(r)) => {
                vector_op(&op, comparison, return_bool, l, r, b).map(Value::Vector)
            }
            _ => Err(format!(
                "`{op}` is defined between numbers and instant vectors only"
            )),
        }
    }

    fn scalar(&mut self, expr: &Expr, t: i64) -> Result<f64, String> {
        match self.eval(expr, t)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(format!("expected a number, found `{expr}`")),
        }
    }

    fn vector(&mut self, expr: &Expr, t: i64) -> Result<Vec<Sample>, String> {
        match self.eval(expr, t)? {
            Value::Vector(v) => Ok(v),
            _ => Err(format!("expected an instant vector, found `{expr}`")),
        }
    }

    fn matrix(&mut self, expr: &Expr, t: i64) -> Result<Matrix, String> {
        match self.eval(expr, t)? {
            Value::Matrix(m) => Ok(m),
            _ => Err(format!("expected a range selector, found `{expr}`")),
        }
    }
}

/// Whether the series `name{labels}` is one `vs` selects.
fn selects(vs: &VectorSelector, name: &str, labels: &[(String, String)]) -> bool {
    if vs.name.as_deref().is_some_and(|n| n != name) {
        return false;
    }
    let value = |key: &str| -> String {
        if key == NAME {
            return name.to_owned();
        }
        labels
            .iter()
            .find(|(k, _)| k == key)
            .map_or_else(String::new, |(_, v)| v.clone())
    };
    let all = |ms: &[promql_parser::label::Matcher]| ms.iter().all(|m| m.is_match(&value(&m.name)));
    let Matchers {
        matchers,
        or_matchers,
    } = &vs.matchers;
    all(matchers) && (or_matchers.is_empty() || or_matchers.iter().any(|group| all(group)))
}

fn offset(offset: Option<&Offset>) -> i64 {
    match offset {
        Some(Offset::Pos(d)) => d.as_secs() as i64,
        Some(Offset::Neg(d)) => -(d.as_secs() as i64),
        None => 0,
    }
}

fn with_name(name: &str, mut labels: Labels) -> Labels {
    labels.push((NAME.to_owned(), name.to_owned()));
    labels.sort();
    labels
}

fn drop_name(mut labels: Labels) -> Labels {
    labels.retain(|(k, _)| k != NAME);
    labels
}

fn map_vector(v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Value {
    Value::Vector(
        v.into_iter()
            .map(|s| Sample {
                labels: drop_name(s.labels),
                value: f(s.value),
            })
            .collect(),
    )
}

/// `absent`'s answer: one element with the equality matchers' labels when
/// nothing was found.
fn absent(empty: bool, arg: &Expr) -> Vec<Sample> {
    if !empty {
        return Vec::new();
    }
    let vs = match arg {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    let mut labels: Labels = vs
        .map(|vs| {
            vs.matchers
                .matchers
                .iter()
                .filter(|m| matches!(m.op, MatchOp::Equal) && m.name != NAME)
                .map(|m| (m.name.clone(), m.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    vec![Sample { labels, value: 1.0 }]
}

fn mean(points: &[(i64, f64)]) -> f64 {
    points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64
}

fn variance(points: &[(i64, f64)]) -> f64 {
    let m = mean(points);
    points.iter().map(|p| (p.1 - m) * (p.1 - m)).sum::<f64>() / points.len() as f64
}

/// The least-squares line through `points`: `(slope per second, value at
/// `at`)`.
fn regression(points: &[(i64, f64)], at: i64) -> Option<(f64, f64)> {
    let xy: Vec<(f64, f64)> = points.iter().map(|&(t, v)| ((t - at) as f64, v)).collect();
    least_squares(&xy)
}

/// The `q` quantile of `values`, interpolated as Prometheus's `quantile`.
fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(f64::total_cmp);
    let rank = q * (values.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = (lower + 1).min(values.len() - 1);
    let weight = rank - lower as f64;
    values[lower] * (1.0 - weight) + values[upper] * weight
}

/// The increase (or delta) over `(start, end]` from `points`, extrapolated
/// to the range's edges as Prometheus does: up to half an average sample
/// interval beyond the first and last sample, and for a counter no further
/// back than where it would have been zero.
fn extrapolated(points: &[(i64, f64)], start: i64, end: i64, counter: bool) -> Option<f64> {
    let [(first_t, first), .., (last_t, last)] = points else {
        return None;
    };
    let mut result = last - first;
    if counter {
        for w in points.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    }
    let sampled = (last_t - first_t) as f64;
    let average = sampled / (points.len() - 1) as f64;
    let mut to_start = (first_t - start) as f64;
    let to_end = (end - last_t) as f64;
    if counter && result > 0.0 && *first >= 0.0 {
        let to_zero = sampled * (first / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    Some(result * interval / sampled)
}

/// Prometheus's `histogram_quantile` over classic buckets: the elements
/// grouped by their labels without `le`, linear within the bucket.
fn histogram_quantile(q: f64, v: Vec<Sample>) -> Vec<Sample> {
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    for s in v {
        let Some(le) = s.labels.iter().find(|(k, _)| k == "le") else {
            continue;
        };
        let bound = if le.1 == "+Inf" {
            f64::INFINITY
        } else {
            match le.1.parse::<f64>() {
                Ok(b) => b,
                Err(_) => continue,
            }
        };
        let labels: Labels = s
            .labels
            .iter()
            .filter(|(k, _)| k != "le" && k != NAME)
            .cloned()
            .collect();
        match groups.iter_mut().find(|(g, _)| *g == labels) {
            Some((_, buckets)) => buckets.push((bound, s.value)),
            None => groups.push((labels, vec![(bound, s.value)])),
        }
    }
    groups
        .into_iter()
        .filter_map(|(labels, mut buckets)| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let value = bucket_quantile(q, &buckets)?;
            Some(Sample { labels, value })
        })
        .collect()
}

/// The `q` quantile of cumulative `buckets` `(upper bound, count)`, sorted,
/// the last `+Inf`: linear within the bucket, as Prometheus's
/// `histogram_quantile`; NaN without observations.
pub(crate) fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let &(top, total) = buckets.last()?;
    if !top.is_infinite() || buckets.len() < 2 {
        return Some(f64::NAN);
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    if total <= 0.0 || q.is_nan() {
        return Some(f64::NAN);
    }
    let rank = q * total;
    let mut below = (0.0, 0.0);
    for (i, &(bound, count)) in buckets.iter().enumerate() {
        if count >= rank {
            if bound.is_infinite() {
                // The +Inf bucket: the highest finite bound.
                return Some(buckets[i.saturating_sub(1)].0);
            }
            if i == 0 && bound <= 0.0 {
                return Some(bound);
            }
            let within = count - below.1;
            let share = if within > 0.0 {
                (rank - below.1) / within
            } else {
                1.0
            };
            return Some(below.0 + (bound - below.0) * share);
        }
        below = (bound, count);
    }
    Some(f64::NAN)
}

fn apply(op: &str, l: f64, r: f64) -> Option<f64> {
    let b = |c: bool| Some(if c { 1.0 } else { 0.0 });
    match op {
        "+" => Some(l + r),
        "-" => Some(l - r),
        "*" => Some(l * r),
        "/" => Some(l / r),
        "%" => Some(l % r),
        "^" => Some(l.powf(r)),
        "atan2" => Some(l.atan2(r)),
        "==" => b(l == r),
        "!=" => b(l != r),
        ">" => b(l > r),
        "<" => b(l < r),
        ">=" => b(l >= r),
        "<=" => b(l <= r),
        _ => None,
    }
}

/// A binary operation's value for one pair: a comparison without `bool`
/// keeps `keep` when true and drops the element when false.
fn result(op: &str, comparison: bool, return_bool: bool, l: f64, r: f64, keep: f64) -> Option<f64> {
    let v = apply(op, l, r)?;
    if comparison && !return_bool {
        (v == 1.0).then_some(keep)
    } else {
        Some(v)
    }
}

/// The labels two elements are matched on.
fn signature(labels: &Labels, b: &BinaryExpr) -> Labels {
    let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
    labels
        .iter()
        .filter(|(k, _)| {
            k != NAME
                && match matching {
                    Some(LabelModifier::Include(on)) => on.labels.iter().any(|l| l == k),
                    Some(LabelModifier::Exclude(ignoring)) => {
                        !ignoring.labels.iter().any(|l| l == k)
                    }
                    None => true,
                }
        })
        .cloned()
        .collect()
}

/// A vector against a scalar (`scalar_left` when the scalar is written
/// first).
fn scalar_op(
    op: &str,
    comparison: bool,
    return_bool: bool,
    v: Vec<Sample>,
    s: f64,
    scalar_left: bool,
) -> Vec<Sample> {
    let mut out = Vec::new();
    for sample in v {
        let (l, r) = if scalar_left {
            (s, sample.value)
        } else {
            (sample.value, s)
        };
        if let Some(value) = result(op, comparison, return_bool, l, r, sample.value) {
            out.push(Sample {
                labels: if comparison && !return_bool {
                    sample.labels
                } else {
                    drop_name(sample.labels)
                },
                value,
            });
        }
    }
    out
}

fn set_op(op: &str, l: Vec<Sample>, r: Vec<Sample>, b: &BinaryExpr) -> Vec<Sample> {
    let right: Vec<Labels> = r.iter().map(|s| signature(&s.labels, b)).collect();
    match op {
        "and" => l
            .into_iter()
            .filter(|s| right.contains(&signature(&s.labels, b)))
            .collect(),
        "unless" => l
            .into_iter()
            .filter(|s| !right.contains(&signature(&s.labels, b)))
            .collect(),
        _ => {
            let left: Vec<Labels> = l.iter().map(|s| signature(&s.labels, b)).collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !left.contains(&signature(&s.labels, b))),
            );
            out
        }
    }
}

fn vector_op(
    op: &str,
    comparison: bool,
    return_bool: bool,
    l: Vec<Sample>,
    r: Vec<Sample>,
    b: &BinaryExpr,
) -> Result<Vec<Sample>, String> {
    let card = b
        .modifier
        .as_ref()
        .map_or(&VectorMatchCardinality::OneToOne, |m| &m.card);
    // The "one" side, by signature.
    let (many, one, swapped, include) = match card {
        VectorMatchCardinality::OneToMany(include) => (r, l, true, include.labels.clone()),
        VectorMatchCardinality::ManyToOne(include) => (l, r, false, include.labels.clone()),
        _ => (l, r, false, Vec::new()),
    };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut by_signature: HashMap<Labels, &Sample> = HashMap::new();
    for s in &one {
        if by_signature.insert(signature(&s.labels, b), s).is_some() {
            return Err(format!(
                "`{op}`: several series on one side match the same labels {}; aggregate them or use on()/ignoring() with group_left/group_right",
                show(&signature(&s.labels, b))
            ));
        }
    }
    let mut seen: HashMap<Labels, ()> = HashMap::new();
    let mut out = Vec::new();
    for s in many {
        let sig = signature(&s.labels, b);
        let Some(other) = by_signature.get(&sig) else {
            continue;
        };
        if one_to_one && seen.insert(sig.clone(), ()).is_some() {
            return Err(format!(
                "`{op}`: several series on one side match the same labels {}; aggregate them or use group_left/group_right",
                show(&sig)
            ));
        }
        let (lv, rv) = if swapped {
            (other.value, s.value)
        } else {
            (s.value, other.value)
        };
        let Some(value) = result(op, comparison, return_bool, lv, rv, lv) else {
            continue;
        };
        let mut labels = if one_to_one {
            if comparison && !return_bool {
                s.labels.clone()
            } else {
                sig.clone()
            }
        } else if comparison && !return_bool {
            s.labels.clone()
        } else {
            drop_name(s.labels.clone())
        };
        for key in &include {
            labels.retain(|(k, _)| k != key);
            if let Some(pair) = other.labels.iter().find(|(k, _)| k == key) {
                labels.push(pair.clone());
            }
        }
        labels.sort();
        out.push(Sample { labels, value });
    }
    Ok(out)
}

/// `{a="1", b="2"}`.
pub fn show(labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", crate::expo::escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Series, Snapshot, Value as Recorded};

    const T0: i64 = 1_796_645_040;

    type Point<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

    fn at(store: &Store, t: i64, series: &[Point<'_>]) {
        let snapshot = Snapshot {
            series: series
                .iter()
                .map(|(name, labels, v)| Series {
                    name: (*name).to_owned(),
                    labels: labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    value: Recorded::Gauge(*v),
                })
                .collect(),
        };
        store.record(t, &snapshot);
    }

    fn query(store: &Store, text: &str, t: i64) -> Vec<(String, f64)> {
        let expr = botfleet_config::promql::parse(text).unwrap();
        match eval(store, &expr, t, &mut State::default()).unwrap() {
            Value::Vector(v) => v.into_iter().map(|s| (show(&s.labels), s.value)).collect(),
            Value::Scalar(v) => vec![(String::new(), v)],
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rate_and_increase_of_a_counter_with_a_reset() {
        let s = Store::new(100);
        // 10 per second for a minute, reset to 0 at 30 s.
        for i in 0..=60 {
            let v = if i < 30 { 10 * i } else { 10 * (i - 30) };
            at(&s, T0 + i, &[("c_total", &[("bot", "a")], v as f64)]);
        }
        let r = query(&s, "rate(c_total[30s])", T0 + 60);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, r#"{bot="a"}"#);
        assert!((r[0].1 - 10.0).abs() < 0.01, "{r:?}");
        let inc = query(&s, "increase(c_total[1m])", T0 + 60);
        // 60 s of 10/s, the reset counted from zero.
        assert!((inc[0].1 - 600.0).abs() < 15.0, "{inc:?}");
        let irate = query(&s, "irate(c_total[10s])", T0 + 60);
        assert_eq!(irate[0].1, 10.0);
        // Nothing in range: nothing.
        assert!(query(&s, "rate(c_total[30s])", T0 + 1000).is_empty());
    }

    #[test]
    fn comparisons_filter_or_answer_bool_and_aggregations_group() {
        let s = Store::new(100);
        at(
            &s,
            T0,
            &[
                ("q", &[("bot", "a"), ("w", "0")], 5.0),
                ("q", &[("bot", "a"), ("w", "1")], 7.0),
                ("q", &[("bot", "b"), ("w", "0")], 1.0),
                ("limit", &[("bot", "a")], 10.0),
                ("limit", &[("bot", "b")], 0.5),
            ],
        );
        assert_eq!(
            query(&s, "sum by (bot) (q)", T0),
            [
                (r#"{bot="a"}"#.to_owned(), 12.0),
                (r#"{bot="b"}"#.to_owned(), 1.0)
            ]
        );
        assert_eq!(
            query(&s, r#"q{bot=~"a|b", w!="1"} > 2"#, T0),
            [(r#"{__name__="q", bot="a", w="0"}"#.to_owned(), 5.0)]
        );
        assert_eq!(query(&s, "count(q > bool 2)", T0), [("{}".to_owned(), 3.0)]);
        assert_eq!(query(&s, "max without (w) (q)", T0)[0].1, 7.0);
        // Vector against vector, matched on bot.
        assert_eq!(
            query(&s, "sum by (bot) (q) > on (bot) limit", T0),
            [
                (r#"{bot="a"}"#.to_owned(), 12.0),
                (r#"{bot="b"}"#.to_owned(), 1.0)
            ]
        );
        assert_eq!(
            query(&s, "sum by (bot) (q) > on (bot) (limit * 1.5)", T0),
            [(r#"{bot="b"}"#.to_owned(), 1.0)]
        );
        assert_eq!(
            query(&s, "q / on (bot) group_left limit", T0).len(),
            3,
            "many to one"
        );
        assert_eq!(query(&s, "topk(1, q)", T0)[0].1, 7.0);
        assert_eq!(query(&s, r#"q unless q{w="1"}"#, T0).len(), 2);
        assert_eq!(
            query(&s, r#"absent(q{bot="c"})"#, T0),
            [(r#"{bot="c"}"#.to_owned(), 1.0)]
        );
        assert!(query(&s, "absent(q)", T0).is_empty());
        // Five minutes later the samples are stale.
        assert!(query(&s, "q", T0 + LOOKBACK + 1).is_empty());
        assert_eq!(query(&s, "q offset 5m", T0 + LOOKBACK).len(), 3);
    }

    #[test]
    fn histogram_quantile_interpolates_within_the_bucket() {
        let s = Store::new(100);
        for (i, (b1, b2, inf)) in [(0.0, 0.0, 0.0), (50.0, 90.0, 100.0)]
            .into_iter()
            .enumerate()
        {
            at(
                &s,
                T0 + 60 * i as i64,
                &[
                    ("h_bucket", &[("le", "0.1")], b1),
                    ("h_bucket", &[("le", "1")], b2),
                    ("h_bucket", &[("le", "+Inf")], inf),
                ],
            );
        }
        let p = query(
            &s,
            "histogram_quantile(0.9, sum by (le) (increase(h_bucket[2m])))",
            T0 + 60,
        );
        assert_eq!(p.len(), 1);
        assert!((p[0].1 - 1.0).abs() < 1e-9, "{p:?}");
        let p = query(&s, "histogram_quantile(0.5, h_bucket)", T0 + 60);
        assert!((p[0].1 - 0.1).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn predict_linear_and_deriv_follow_the_trend() {
        let s = Store::new(100);
        for i in 0..600 {
            at(&s, T0 + i, &[("conns", &[], 10.0 + 0.5 * i as f64)]);
        }
        let d = query(&s, "deriv(conns[5m])", T0 + 599);
        assert!((d[0].1 - 0.5).abs() < 1e-9);
        let p = query(&s, "predict_linear(conns[10m], 3600) > 1000", T0 + 599);
        assert!(
            (p[0].1 - (10.0 + 0.5 * 599.0 + 1800.0)).abs() < 1e-6,
            "{p:?}"
        );
        assert!(query(&s, "predict_linear(conns[10m], 600) > 1000", T0 + 599).is_empty());
    }

    #[test]
    fn anomalous_keeps_its_baseline_between_evaluations() {
        let s = Store::new(100);
        let expr = botfleet_config::promql::parse(r#"anomalous(rate_g, 5, "up")"#).unwrap();
        let mut state = State::default();
        let mut fired = Vec::new();
        for i in 0..80 {
            // Noise around 100, then a step to 200 at 60.
            let v = if i < 60 {
                100.0 + (i % 5) as f64
            } else {
                200.0
            };
            at(&s, T0 + i, &[("rate_g", &[("bot", "a")], v)]);
            if let Value::Vector(v) = eval(&s, &expr, T0 + i, &mut state).unwrap() {
                if !v.is_empty() {
                    fired.push(i);
                }
            }
        }
        assert_eq!(
            fired.first(),
            Some(&62),
            "three anomalous points in a row: {fired:?}"
        );
    }

    #[test]
    fn label_replace_sets_moves_and_removes_labels_as_prometheus_does() {
        let s = Store::new(100);
        at(
            &s,
            T0,
            &[
                ("in_use", &[("bot", "a"), ("host", "db-1:5432")], 3.0),
                ("idle", &[("bot", "a"), ("host", "db-1:5432")], 7.0),
            ],
        );
        // A constant label tells apart lines that `or` would merge.
        let r = query(
            &s,
            r#"label_replace(sum by (bot) (in_use), "state", "in use", "", "") or label_replace(sum by (bot) (idle), "state", "idle", "", "")"#,
            T0,
        );
        assert_eq!(
            r,
            vec![
                ("{bot=\"a\", state=\"in use\"}".to_owned(), 3.0),
                ("{bot=\"a\", state=\"idle\"}".to_owned(), 7.0),
            ]
        );
        // Groups expanded; a regex that does not match the whole value
        // leaves the sample as it was; an empty result removes the label.
        let r = query(
            &s,
            r#"label_replace(in_use, "name", "$1", "host", "(.*):.*")"#,
            T0,
        );
        assert_eq!(
            r[0].0,
            "{__name__=\"in_use\", bot=\"a\", host=\"db-1:5432\", name=\"db-1\"}"
        );
        let r = query(
            &s,
            r#"label_replace(in_use, "name", "$1", "host", "db")"#,
            T0,
        );
        assert_eq!(
            r[0].0,
            "{__name__=\"in_use\", bot=\"a\", host=\"db-1:5432\"}"
        );
        let r = query(&s, r#"label_replace(in_use, "host", "", "bot", "a")"#, T0);
        assert_eq!(r[0].0, "{__name__=\"in_use\", bot=\"a\"}");
        // Two series made one is an error, as in Prometheus.
        let expr = botfleet_config::promql::parse(
            r#"label_replace({__name__=~"in_use|idle"}, "__name__", "x", "", "")"#,
        )
        .unwrap();
        let err = eval(&s, &expr, T0, &mut State::default()).unwrap_err();
        assert!(err.contains("same labels"), "{err}");
    }

    #[test]
    fn what_is_not_supported_is_named_when_checked() {
        for (text, says) in [
            ("label_join(q, \"a\", \",\", \"b\", \"c\")", "label_join"),
            (
                "label_replace(q, \"a\", \"$1\", \"b\", \"(\")",
                "invalid regex",
            ),
            (
                "label_replace(q, \"1a\", \"x\", \"b\", \"\")",
                "invalid label name",
            ),
            ("rate(q[5m:1m])", "subqueries"),
            ("q @ 100", "@ modifier"),
            ("count_values(\"v\", q)", "count_values"),
        ] {
            let expr = botfleet_config::promql::parse(text).unwrap();
            let err = check(&expr).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(check(&botfleet_config::promql::parse("sum(rate(q[1m])) > 0").unwrap()).is_ok());
    }
}
