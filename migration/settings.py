"""Settings every service with a migrating table shares: fallback, shadow, relay and control-plane tuning."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from migration.hybrid import HybridSettings
from migration.journal import DEFAULT_SETTLE
from migration.watchdog import WatchdogSettings

WATCHDOG_DEFAULTS = WatchdogSettings()


class MigratingTableSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # Initial migration modes (loanbook's shape or the seed's {"PaymentSettings": {...}}); only tables with no
    # mode yet are seeded — after that the control plane (`loanbook migrate switch`) is the source of truth.
    migration_settings_file: Path | None = None
    # Per DynamoDB call; past it a read falls back (where allowed). Above DynamoDB's normal tail, well under
    # what a caller waits: it bounds the latency of the few calls that pay for detecting an outage.
    dynamo_timeout_seconds: float = Field(default=0.2, gt=0, le=30)
    # Per DynamoDB call where nothing falls back (dynamo_only, fallback off): a slow answer beats an error.
    dynamo_timeout_without_fallback_seconds: float = Field(default=2.0, gt=0, le=30)
    breaker_failure_threshold: int = Field(default=5, ge=1, le=1000)
    # How long an open breaker waits before letting calls probe DynamoDB again. Short: a probe costs one call's
    # timeout while DynamoDB is still down, but every second the breaker stays open after it recovered, reads
    # with nothing to fall back to are refused.
    breaker_recovery_seconds: float = Field(default=1.0, gt=0, le=600)
    shadow_sample_ratio: float = Field(default=0.1, ge=0, le=1)
    shadow_budget_seconds: float = Field(default=0.5, gt=0, le=30)
    # How long a key stays routed to PostgreSQL after its DynamoDB copy landed, while DynamoDB's GSIs and eventually
    # consistent reads catch up (0: not at all, for DynamoDB Local only, which is consistent at once).
    journal_settle_seconds: float = Field(default=DEFAULT_SETTLE.total_seconds(), ge=0, le=60)
    # How often a replica re-reads the modes even without a notification (the notification is the fast path).
    mode_poll_seconds: float = Field(default=5.0, gt=0, le=300)
    relay_enabled: bool = True
    # Whether a write's acknowledgement waits for its DynamoDB copy (see migration.hybrid.HybridSettings): off, the
    # copy runs after the answer, durable through the journal; on, every dual-written write pays DynamoDB's latency.
    await_dynamodb_copy: bool = False
    background_copy_limit: int = Field(default=16, ge=0, le=10_000)
    relay_head_start_seconds: float = Field(default=2.0, ge=0, le=60)
    # How long the key of a journaled write is kept for an incremental verification (toolkit.verify) when no
    # verification covers it sooner: a week of writes is room for a cutover's verifications; past it the key is
    # dropped, the gap recorded, and the next verification must be a full one.
    key_history_retention_hours: float = Field(default=168.0, gt=0, le=24 * 90)
    # The watchdog (migration.watchdog): the reasons for its defaults are in WatchdogSettings.
    watchdog_check_seconds: float = Field(default=WATCHDOG_DEFAULTS.check_seconds, gt=0, le=300)
    watchdog_sustain_seconds: float = Field(default=WATCHDOG_DEFAULTS.sustain_seconds, ge=0, le=3600)
    watchdog_cool_down_seconds: float = Field(default=WATCHDOG_DEFAULTS.cool_down_seconds, ge=0, le=86_400)
    watchdog_max_fallback_ratio: float = Field(default=WATCHDOG_DEFAULTS.max_fallback_ratio, ge=0, le=1)
    watchdog_max_failed_ratio: float = Field(default=WATCHDOG_DEFAULTS.max_failed_ratio, ge=0, le=1)

    def watchdog_settings(self) -> WatchdogSettings:
        return WatchdogSettings(
            check_seconds=self.watchdog_check_seconds,
            sustain_seconds=self.watchdog_sustain_seconds,
            cool_down_seconds=self.watchdog_cool_down_seconds,
            max_fallback_ratio=self.watchdog_max_fallback_ratio,
            max_failed_ratio=self.watchdog_max_failed_ratio,
        )

    def hybrid_settings(self) -> HybridSettings:
        return HybridSettings(
            dynamo_timeout_seconds=self.dynamo_timeout_seconds,
            dynamo_timeout_without_fallback_seconds=self.dynamo_timeout_without_fallback_seconds,
            breaker_failure_threshold=self.breaker_failure_threshold,
            breaker_recovery_seconds=self.breaker_recovery_seconds,
            shadow_sample_ratio=self.shadow_sample_ratio,
            shadow_budget_seconds=self.shadow_budget_seconds,
            await_dynamodb_copy=self.await_dynamodb_copy,
            background_copy_limit=self.background_copy_limit,
            relay_head_start_seconds=self.relay_head_start_seconds,
        )
