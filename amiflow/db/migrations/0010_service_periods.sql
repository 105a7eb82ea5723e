-- Service periods (move-in / move-out): which account takes service through a meter, from which local day to which.
-- The billing run (rating/block_task.py) bills a meter that has rows here once per row overlapping the month, for
-- the row's days only (fixed charges and monthly tier bounds prorated by days, docs/rating.md); a meter without rows
-- is billed for whole months to amiflow.meters.account, as before. Rows of one meter must not overlap (the run
-- skips such a meter with reason overlapping_service).
CREATE TABLE amiflow.service_periods (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id    integer NOT NULL REFERENCES amiflow.meters (id) ON DELETE CASCADE,
    account     text NOT NULL CHECK (account <> ''),
    start_date  date NOT NULL,  -- move-in: the first local day of service
    end_date    date,           -- move-out: the first local day WITHOUT service (exclusive); NULL = still served
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (end_date IS NULL OR end_date > start_date)
);
CREATE INDEX service_periods_meter_idx ON amiflow.service_periods (meter_id, start_date);
