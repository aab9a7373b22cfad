//! The retention policy as configured: the strategy and the counts, after upstream's
//! normalisation rules. A leaf: configuration builds it, the layout classifies by it,
//! retention plans with it.

/// The rolling strategy's folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Daily,
    Weekly,
    Monthly,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Daily => "daily",
            Class::Weekly => "weekly",
            Class::Monthly => "monthly",
        }
    }

    pub fn from_dir(name: &str) -> Option<Class> {
        match name {
            "daily" => Some(Class::Daily),
            "weekly" => Some(Class::Weekly),
            "monthly" => Some(Class::Monthly),
            _ => None,
        }
    }
}

/// `BACKUP_STRATEGY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Flat `BACKUP_DIR/YYYY-MM-DD/` folders, `NUM_BACKUPS` per database.
    Daily,
    /// `daily/`, `weekly/`, `monthly/` folders, each with its own count.
    Rolling,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Daily => "daily",
            Strategy::Rolling => "rolling",
        }
    }
}

/// How many backups to keep, after upstream's normalisation rules (see `Policy::from_counts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub strategy: Strategy,
    pub num_backups: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    /// `BACKUP_ANOMALY_HOLD` (default 2): the backup from before an anomaly is kept until a
    /// later backup is verified or this many later good backups without anomaly exist.
    pub anomaly_hold: u32,
}

impl Policy {
    /// Applies upstream's rules to the raw env values: `WEEKLY_BACKUPS < 0` selects the daily
    /// strategy; rolling with `MONTHLY_BACKUPS < 0` is an error ("Unknown backup strategy");
    /// when daily, weekly and monthly are all ≤ 0, one daily backup is kept.
    ///
    /// # Errors
    /// A message for an unknown strategy name or an impossible combination.
    pub fn from_counts(strategy: &str, num: i64, daily: i64, weekly: i64, monthly: i64) -> Result<Policy, String> {
        let strategy = match strategy.to_ascii_lowercase().as_str() {
            "daily" => Strategy::Daily,
            "rolling" if weekly < 0 => Strategy::Daily,
            "rolling" if monthly >= 0 => Strategy::Rolling,
            "rolling" => {
                return Err(format!("Unknown backup strategy: rolling needs MONTHLY_BACKUPS >= 0 (got {monthly})"));
            }
            other => {
                return Err(format!("Unknown backup strategy \"{other}\" (expected daily or rolling)"));
            }
        };
        let clamp = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        let daily = if daily <= 0 && weekly <= 0 && monthly <= 0 { 1 } else { clamp(daily) };
        Ok(Policy {
            strategy,
            num_backups: clamp(num),
            daily,
            weekly: clamp(weekly),
            monthly: clamp(monthly),
            anomaly_hold: 2,
        })
    }

    /// How many backups of one database to keep in a class folder (`None` = flat folder).
    pub fn keep_count(&self, class: Option<Class>) -> u32 {
        match class {
            Some(Class::Daily) => self.daily,
            Some(Class::Weekly) => self.weekly,
            Some(Class::Monthly) => self.monthly,
            None => self.num_backups,
        }
    }
}

/// `S3_OBJECT_LOCK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can still delete.
    Governance,
    /// Nobody can delete before the date, not even the account's root user.
    Compliance,
}

impl LockMode {
    /// The value of `x-amz-object-lock-mode`.
    pub fn header(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}
