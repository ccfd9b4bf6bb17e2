-- Bistro Verde: when the kitchen serves (weekday 0 = Monday), and the bookings.
CREATE TABLE IF NOT EXISTS service (
    weekday INTEGER PRIMARY KEY, opens TEXT NOT NULL, closes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS info (name TEXT PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, caller_id TEXT NOT NULL, party INTEGER NOT NULL,
    day TEXT NOT NULL, time TEXT NOT NULL
);

INSERT OR IGNORE INTO service VALUES
  (0, '12:00', '22:30'), (1, '12:00', '22:30'), (2, '12:00', '22:30'), (3, '12:00', '22:30'),
  (4, '12:00', '23:00'), (5, '12:00', '23:00'), (6, '12:00', '21:30');
INSERT OR IGNORE INTO info VALUES
  ('hours', 'every day from noon, until 10:30 PM, 11 PM on Fridays and Saturdays, and 9:30 PM on Sundays');
