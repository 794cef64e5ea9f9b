"""What the gateway decides without calling Stripe: plan ids and words for declines."""

from billing.stripe_gateway import GENERIC_DECLINE, plan_id_for, reader_reason


def test_plan_ids_are_deterministic_per_amount_currency_and_interval() -> None:
    assert plan_id_for(500, "eur", "month") == "pledge-eur-500-month"
    assert plan_id_for(500, "eur", "year") != plan_id_for(500, "eur", "month")


def test_decline_code_wins_over_the_generic_error_code() -> None:
    assert "insufficient funds" in reader_reason("card_declined", "insufficient_funds")
    assert "expired" in reader_reason("expired_card")
    assert reader_reason("card_declined", "do_not_honor") == GENERIC_DECLINE
    assert reader_reason(None) == GENERIC_DECLINE
