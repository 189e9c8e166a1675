//! Conditions over profile values (segments, triggers, lifecycle stages):
//! `stage == "new" && orders_30d >= 1`, `days_inactive >= 7 || !(visits_today > 0)`.
//!
//! Comparisons of a variable with a literal (`== != < <= > >=`), combined with `&&`/`and`,
//! `||`/`or`, `!`/`not` and parentheses. Variables are resolved when the condition is
//! compiled, so an unknown name is a config error, and evaluation allocates nothing.
//! Written here rather than with evalexpr: evaluation runs for every event of every user
//! (each segment and trigger), and needs variables computed lazily from buckets.

use std::fmt;

/// A literal of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
}

/// A variable's value while evaluating.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    /// No value (e.g. the max of an empty window): every comparison is false.
    Empty,
    /// A number.
    Num(f64),
    /// A string.
    Str(&'a str),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A compiled condition over variables of type `V`.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond<V> {
    /// Always this.
    Const(bool),
    /// `var op literal`.
    Cmp(V, Op, Literal),
    /// Both.
    And(Box<Cond<V>>, Box<Cond<V>>),
    /// Either.
    Or(Box<Cond<V>>, Box<Cond<V>>),
    /// Not.
    Not(Box<Cond<V>>),
}

impl<V> Cond<V> {
    /// Evaluates with `value` giving each variable's value.
    pub fn eval<'a>(&self, value: &mut impl FnMut(&V) -> Val<'a>) -> bool {
        match self {
            Cond::Const(b) => *b,
            Cond::Cmp(var, op, lit) => compare(&value(var), *op, lit),
            Cond::And(a, b) => a.eval(value) && b.eval(value),
            Cond::Or(a, b) => a.eval(value) || b.eval(value),
            Cond::Not(a) => !a.eval(value),
        }
    }

    /// Every variable it reads.
    pub fn vars(&self) -> Vec<&V> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'s>(&'s self, out: &mut Vec<&'s V>) {
        match self {
            Cond::Const(_) => {}
            Cond::Cmp(v, _, _) => out.push(v),
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.collect(out);
                b.collect(out);
            }
            Cond::Not(a) => a.collect(out),
        }
    }
}

fn compare(value: &Val<'_>, op: Op, lit: &Literal) -> bool {
    use std::cmp::Ordering;
    let ord = match (value, lit) {
        (Val::Empty, _) => return false,
        (Val::Num(a), Literal::Num(b)) => a.partial_cmp(b),
        (Val::Str(a), Literal::Str(b)) => Some((*a).cmp(b.as_str())),
        (Val::Num(a), Literal::Bool(b)) => Some(a.partial_cmp(&if *b { 1.0 } else { 0.0 }).unwrap_or(Ordering::Less)),
        _ => None,
    };
    match (ord, op) {
        (None, Op::Ne) => true,
        (None, _) => false,
        (Some(o), Op::Eq) => o == Ordering::Equal,
        (Some(o), Op::Ne) => o != Ordering::Equal,
        (Some(o), Op::Lt) => o == Ordering::Less,
        (Some(o), Op::Le) => o != Ordering::Greater,
        (Some(o), Op::Gt) => o == Ordering::Greater,
        (Some(o), Op::Ge) => o != Ordering::Less,
    }
}

/// Why a condition does not compile: the position and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the text.
    pub at: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.at, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Lit(Literal),
    Op(Op),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, message: String| ParseError { at, message };
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => (out.push((start, Token::Open)), i += 1).1,
            b')' => (out.push((start, Token::Close)), i += 1).1,
            b'&' if bytes.get(i + 1) == Some(&b'&') => (out.push((start, Token::And)), i += 2).1,
            b'|' if bytes.get(i + 1) == Some(&b'|') => (out.push((start, Token::Or)), i += 2).1,
            b'=' if bytes.get(i + 1) == Some(&b'=') => (out.push((start, Token::Op(Op::Eq))), i += 2).1,
            b'!' if bytes.get(i + 1) == Some(&b'=') => (out.push((start, Token::Op(Op::Ne))), i += 2).1,
            b'!' => (out.push((start, Token::Not)), i += 1).1,
            b'<' | b'>' => {
                let eq = bytes.get(i + 1) == Some(&b'=');
                let op = match (c, eq) {
                    (b'<', false) => Op::Lt,
                    (b'<', true) => Op::Le,
                    (_, false) => Op::Gt,
                    (_, true) => Op::Ge,
                };
                out.push((start, Token::Op(op)));
                i += 1 + usize::from(eq);
            }
            b'"' | b'\'' => {
                let end = text[i + 1..].find(c as char).ok_or_else(|| err(start, "unterminated string".into()))?;
                out.push((start, Token::Lit(Literal::Str(text[i + 1..i + 1 + end].to_owned()))));
                i += end + 2;
            }
            b'0'..=b'9' | b'-' | b'.' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || matches!(bytes[i], b'.' | b'-' | b'e' | b'E' | b'_')) {
                    i += 1;
                }
                let number = text[start..i].replace('_', "");
                let n: f64 = number.parse().map_err(|_| err(start, format!("{:?} is not a number", &text[start..i])))?;
                out.push((start, Token::Lit(Literal::Num(n))));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &text[start..i];
                out.push((
                    start,
                    match word.to_ascii_lowercase().as_str() {
                        "and" => Token::And,
                        "or" => Token::Or,
                        "not" => Token::Not,
                        "true" => Token::Lit(Literal::Bool(true)),
                        "false" => Token::Lit(Literal::Bool(false)),
                        _ => Token::Ident(word.to_owned()),
                    },
                ));
            }
            b'=' => return Err(err(start, "use == to compare".into())),
            _ => return Err(err(start, format!("unexpected {:?}", c as char))),
        }
    }
    Ok(out)
}

struct Parser<'r, V> {
    tokens: Vec<(usize, Token)>,
    at: usize,
    end: usize,
    resolve: &'r mut dyn FnMut(&str) -> Result<V, String>,
}

impl<V> Parser<'_, V> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn pos(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(p, _)| *p)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { at: self.pos(), message: message.into() })
    }

    fn or(&mut self) -> Result<Cond<V>, ParseError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Cond::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Cond<V>, ParseError> {
        let mut left = self.not()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            left = Cond::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Cond<V>, ParseError> {
        if self.peek() == Some(&Token::Not) {
            self.at += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Cond<V>, ParseError> {
        match self.peek().cloned() {
            Some(Token::Open) => {
                self.at += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return self.error("expected )");
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Lit(Literal::Bool(b))) => {
                self.at += 1;
                Ok(Cond::Const(b))
            }
            Some(Token::Ident(name)) => {
                let var_at = self.pos();
                self.at += 1;
                let var = (self.resolve)(&name).map_err(|message| ParseError { at: var_at, message })?;
                let Some(Token::Op(op)) = self.peek().cloned() else { return self.error(format!("expected a comparison after {name}")) };
                self.at += 1;
                let Some(Token::Lit(lit)) = self.peek().cloned() else { return self.error("expected a number, a quoted string, true or false") };
                self.at += 1;
                Ok(Cond::Cmp(var, op, lit))
            }
            Some(_) => self.error("expected a variable, ( or not"),
            None => self.error("the condition ends too early"),
        }
    }
}

/// Compiles `text`, resolving each variable name with `resolve` (its error names what is
/// wrong with the variable).
pub fn compile<V>(text: &str, resolve: &mut dyn FnMut(&str) -> Result<V, String>) -> Result<Cond<V>, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, at: 0, end: text.len(), resolve };
    let cond = parser.or()?;
    if parser.at < parser.tokens.len() {
        return parser.error("unexpected text after the condition");
    }
    Ok(cond)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, vars: &[(&str, Val<'static>)]) -> Result<bool, ParseError> {
        let names: Vec<String> = vars.iter().map(|(n, _)| n.to_string()).collect();
        let cond = compile(text, &mut |name: &str| names.iter().position(|n| n == name).ok_or_else(|| format!("unknown variable {name}")))?;
        Ok(cond.eval(&mut |i: &usize| vars[*i].1.clone()))
    }

    #[test]
    fn conditions_evaluate() {
        let vars = [("stage", Val::Str("new")), ("orders_30d", Val::Num(2.0)), ("max_price", Val::Empty)];
        assert!(run("stage == \"new\" && orders_30d >= 1", &vars).unwrap());
        assert!(run("stage == 'new' AND orders_30d >= 1", &vars).unwrap());
        assert!(!run("stage != \"new\" or orders_30d > 2", &vars).unwrap());
        assert!(run("not (orders_30d < 2) && (stage == \"x\" || true)", &vars).unwrap());
        assert!(!run("max_price > 0", &vars).unwrap());
        assert!(!run("max_price <= 0", &vars).unwrap());
        assert!(run("!(max_price > 0)", &vars).unwrap());
        assert!(run("orders_30d == 2 && orders_30d != 3 && orders_30d >= -1.5e0", &vars).unwrap());
        assert!(!run("stage > 3", &vars).unwrap());
    }

    #[test]
    fn errors_say_where_and_what() {
        let vars = [("a", Val::Num(1.0))];
        assert_eq!(run("b > 1", &vars).unwrap_err(), ParseError { at: 0, message: "unknown variable b".into() });
        assert_eq!(run("a = 1", &vars).unwrap_err().message, "use == to compare");
        assert_eq!(run("a > ", &vars).unwrap_err().message, "expected a number, a quoted string, true or false");
        assert_eq!(run("(a > 1", &vars).unwrap_err().message, "expected )");
        assert_eq!(run("a > 1 a", &vars).unwrap_err().message, "unexpected text after the condition");
        assert_eq!(run("a > \"x", &vars).unwrap_err().message, "unterminated string");
        assert_eq!(run("", &vars).unwrap_err().message, "the condition ends too early");
    }
}
