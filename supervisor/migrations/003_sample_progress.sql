-- Each sample carries the run's progress (`done`) at the moment it was taken, so the Run chart can draw the
-- progress curve next to RSS, swap and CPU. Null: no progress reported yet, or a sample stored before this.

ALTER TABLE samples ADD COLUMN progress_done REAL;
