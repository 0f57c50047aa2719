//! GitLab's `rules:` for steps, the subset kiln evaluates: `if:` with
//! `$VAR`, `==`, `!=`, `null`, `&&`, `||` and parentheses, and `when:
//! on_success | never`.
//!
//! The rules are checked once at run start, with the run's variables, so a
//! pipeline file keeps one meaning locally and in a GitLab job (where
//! `kiln export gitlab` hands GitLab the same rules verbatim).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Pipeline, PipelineError, Position, Step};

/// `when:` of a rule. GitLab's other values (`manual`, `delayed`,
/// `always`, `on_failure`) need a scheduler kiln does not have, so the
/// file refuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Include the step (GitLab's default).
    #[default]
    OnSuccess,
    /// Leave the step out of the run.
    Never,
}

/// One rule of a step, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `if:`; a rule without one always matches.
    pub condition: Option<Condition>,
    /// `when:` as written (`None`: `on_success`), kept so that the export
    /// is verbatim.
    pub when: Option<When>,
    /// Where the rule is written.
    pub position: Position,
}

/// A parsed `if:` expression and its text.
///
/// ```
/// use kiln_pipeline::rules::Condition;
///
/// let deploy = Condition::parse(r#"$CI_COMMIT_REF_NAME == "main" && $TOKEN"#).unwrap();
/// let on_main = |name: &str| (name == "CI_COMMIT_REF_NAME").then(|| "main".to_owned());
/// // TOKEN is unset: `null` in a rule, not an error.
/// assert!(!deploy.holds(&on_main));
/// ```
#[derive(Debug, Clone)]
pub struct Condition {
    /// The expression as written, for messages and the GitLab export.
    pub text: String,
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Equal(Operand, Operand, bool),
    /// `$VAR` alone: set and not empty.
    Set(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Variable(String),
    Text(String),
    Null,
}

impl Condition {
    /// Parse `text`; the error says what was expected and where.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let mut parser = Parser { text, rest: text };
        let expr = parser.or()?;
        if !parser.rest.trim_start().is_empty() {
            return Err(parser.expected("`&&`, `||` or the end"));
        }
        Ok(Condition {
            text: text.to_owned(),
            expr,
        })
    }

    /// Whether the condition holds; `value` gives a variable's value, `None`
    /// when it is unset (GitLab's `null`, never an error).
    pub fn holds(&self, value: &dyn Fn(&str) -> Option<String>) -> bool {
        eval(&self.expr, value)
    }
}

fn eval(expr: &Expr, value: &dyn Fn(&str) -> Option<String>) -> bool {
    let operand = |o: &Operand| match o {
        Operand::Variable(name) => value(name),
        Operand::Text(text) => Some(text.clone()),
        Operand::Null => None,
    };
    match expr {
        Expr::Or(a, b) => eval(a, value) || eval(b, value),
        Expr::And(a, b) => eval(a, value) && eval(b, value),
        Expr::Equal(a, b, equal) => (operand(a) == operand(b)) == *equal,
        Expr::Set(name) => value(name).is_some_and(|v| !v.is_empty()),
    }
}

/// Recursive descent over GitLab's grammar: `||` binds looser than `&&`.
struct Parser<'a> {
    text: &'a str,
    rest: &'a str,
}

impl Parser<'_> {
    fn expected(&self, what: &str) -> String {
        let at = self.rest.trim_start();
        let found = if at.is_empty() {
            "the end".to_owned()
        } else {
            format!("`{at}`")
        };
        format!(
            "`{}` is not a rule expression: expected {what} at {found}; write e.g. `$VAR`, `$VAR == \"text\"`, `$VAR != null`, joined by `&&` or `||`",
            self.text
        )
    }

    fn eat(&mut self, token: &str) -> bool {
        match self.rest.trim_start().strip_prefix(token) {
            Some(after) => {
                self.rest = after;
                true
            }
            None => false,
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.term()?;
        while self.eat("&&") {
            left = Expr::And(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, String> {
        if self.eat("(") {
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.expected("`)`"));
            }
            return Ok(inner);
        }
        let left = self.operand()?;
        for (token, equal) in [("==", true), ("!=", false)] {
            if self.eat(token) {
                return Ok(Expr::Equal(left, self.operand()?, equal));
            }
        }
        if ["=~", "!~"]
            .iter()
            .any(|t| self.rest.trim_start().starts_with(t))
        {
            return Err(self.expected("`==` or `!=` (kiln does not match regular expressions)"));
        }
        match left {
            Operand::Variable(name) => Ok(Expr::Set(name)),
            _ => Err(self.expected("`==` or `!=` after a string or `null`")),
        }
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let start = self.rest.trim_start();
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let (operand, after) = if let Some(braced) = start.strip_prefix("${") {
            let end = braced.find('}').unwrap_or(braced.len());
            let name = &braced[..end];
            if name.is_empty() || !name.chars().all(is_name) || end == braced.len() {
                return Err(self.expected("a variable name and `}` after `${`"));
            }
            (Operand::Variable(name.to_owned()), &braced[end + 1..])
        } else if let Some(bare) = start.strip_prefix('$') {
            let end = bare.find(|c| !is_name(c)).unwrap_or(bare.len());
            if end == 0 {
                return Err(self.expected("a variable name after `$`"));
            }
            (Operand::Variable(bare[..end].to_owned()), &bare[end..])
        } else if let Some(quote) = start.chars().next().filter(|c| matches!(c, '"' | '\'')) {
            let body = &start[1..];
            let Some(end) = body.find(quote) else {
                return Err(self.expected(&format!("a closing {quote}")));
            };
            (Operand::Text(body[..end].to_owned()), &body[end + 1..])
        } else if let Some(after) = start
            .strip_prefix("null")
            .filter(|a| !a.starts_with(is_name))
        {
            (Operand::Null, after)
        } else {
            return Err(self.expected("`$VAR`, a quoted string, `null` or `(`"));
        };
        self.rest = after;
        Ok(operand)
    }
}

/// Why a step's rules leave it out of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Exclusion {
    /// The deciding rule, or the first rule when none matched.
    pub position: Position,
    /// In words: which rule, or that none matched.
    pub reason: String,
}

/// Decide `rules` as GitLab does: the first matching rule decides; no
/// matching rule excludes; no rules at all include.
pub fn decide(rules: &[Rule], value: &dyn Fn(&str) -> Option<String>) -> Option<Exclusion> {
    let first = rules.first()?;
    let Some(rule) = rules
        .iter()
        .find(|r| r.condition.as_ref().is_none_or(|c| c.holds(value)))
    else {
        return Some(Exclusion {
            position: first.position,
            reason: "none of its rules matches".into(),
        });
    };
    (rule.when == Some(When::Never)).then(|| Exclusion {
        position: rule.position,
        reason: match &rule.condition {
            Some(condition) => format!("its rule `if: {}` says `when: never`", condition.text),
            None => "its rule `when: never` (without `if:`) matches always".into(),
        },
    })
}

/// The steps of `pipeline` that their rules exclude from this run.
pub fn excluded_steps(
    pipeline: &Pipeline,
    value: &dyn Fn(&str) -> Option<String>,
) -> HashMap<String, Exclusion> {
    pipeline
        .steps
        .iter()
        .filter_map(|s| decide(&s.rules, value).map(|e| (s.name.clone(), e)))
        .collect()
}

/// A step to run whose written `needs:` names an `excluded` step is an
/// error, as in GitLab; needs that come from stage order may just go
/// without the excluded step.
pub fn check_needs<'a>(
    pipeline: &Pipeline,
    steps: impl IntoIterator<Item = &'a Step>,
    excluded: &HashMap<String, Exclusion>,
) -> Result<(), PipelineError> {
    for step in steps.into_iter().filter(|s| s.needs_declared) {
        if let Some((need, why)) = step
            .needs
            .iter()
            .find_map(|n| excluded.get(n).map(|e| (n, e)))
        {
            return Err(pipeline.error(
                why.position,
                format!(
                    "step `{}` needs `{need}`, but `{need}` is excluded from this run: {}; give `{}` rules that exclude it too, or drop `{need}` from its `needs:`",
                    step.name, why.reason, step.name
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(text: &str, vars: &[(&str, &str)]) -> bool {
        let value = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        Condition::parse(text).unwrap().holds(&value)
    }

    #[test]
    fn evaluates_gitlab_expressions() {
        let env = [("A", "x"), ("EMPTY", "")];
        assert!(holds("$A", &env) && holds("${A}", &env));
        assert!(!holds("$EMPTY", &env) && !holds("$UNSET", &env));
        assert!(holds("$A == \"x\"", &env) && holds("$A != 'y'", &env));
        assert!(holds("'x' == $A", &env));
        assert!(holds("$UNSET == null", &env) && holds("$EMPTY != null", &env));
        assert!(holds("$EMPTY == ''", &env) && !holds("$UNSET == ''", &env));
        assert!(holds("$A == ${A}", &env) && !holds("$A == $EMPTY", &env));
        // `&&` binds tighter than `||`.
        assert!(holds("$A || $UNSET && $EMPTY", &env));
        assert!(!holds("($A || $UNSET) && $EMPTY", &env));
        assert!(holds("$A=='x'&&($EMPTY||$A!=null)", &env));
    }

    #[test]
    fn malformed_expressions_say_what_is_expected() {
        for (text, expected) in [
            ("", "expected `$VAR`"),
            ("$A ==", "at the end"),
            ("$A == \"x", "a closing \""),
            ("($A", "expected `)`"),
            ("$A $B", "expected `&&`, `||` or the end at `$B`"),
            ("$A =~ /x/", "does not match regular expressions"),
            ("\"x\"", "after a string or `null`"),
            ("${A", "`}` after `${`"),
            ("$A = 'x'", "at `= 'x'`"),
        ] {
            let err = Condition::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rule = |text: Option<&str>, when| Rule {
            condition: text.map(|t| Condition::parse(t).unwrap()),
            when,
            position: Position::default(),
        };
        let none = |_: &str| None;
        let set = |_: &str| Some("1".to_owned());
        let rules = [rule(Some("$X"), Some(When::Never)), rule(None, None)];
        assert!(decide(&rules, &none).is_none());
        let why = decide(&rules, &set).unwrap();
        assert_eq!(why.reason, "its rule `if: $X` says `when: never`");
        let only = [rule(Some("$X"), Some(When::OnSuccess))];
        assert_eq!(
            decide(&only, &none).unwrap().reason,
            "none of its rules matches"
        );
        assert!(decide(&only, &set).is_none() && decide(&[], &none).is_none());
    }
}
