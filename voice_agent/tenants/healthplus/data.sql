-- HealthPlus: its clinics, opening hours (weekday 0 = Monday) and appointments.
-- Run on every start: keep CREATE TABLE IF NOT EXISTS and INSERT OR IGNORE.
CREATE TABLE IF NOT EXISTS clinics (
    name TEXT PRIMARY KEY, address TEXT NOT NULL, hours_text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clinic_hours (
    clinic TEXT NOT NULL REFERENCES clinics(name), weekday INTEGER NOT NULL,
    opens TEXT NOT NULL, closes TEXT NOT NULL, PRIMARY KEY (clinic, weekday)
);
CREATE TABLE IF NOT EXISTS appointments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, caller_id TEXT NOT NULL,
    clinic TEXT NOT NULL REFERENCES clinics(name), day TEXT NOT NULL, time TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'booked'
);

INSERT OR IGNORE INTO clinics VALUES
  ('Downtown', '12 Main Street', 'Monday to Friday 8 AM to 6 PM, and Saturday 9 AM to 1 PM'),
  ('Riverside', '40 River Road', 'Monday to Saturday 9 AM to 5 PM');
INSERT OR IGNORE INTO clinic_hours VALUES
  ('Downtown', 0, '08:00', '18:00'),
  ('Downtown', 1, '08:00', '18:00'),
  ('Downtown', 2, '08:00', '18:00'),
  ('Downtown', 3, '08:00', '18:00'),
  ('Downtown', 4, '08:00', '18:00'),
  ('Downtown', 5, '09:00', '13:00'),
  ('Riverside', 0, '09:00', '17:00'),
  ('Riverside', 1, '09:00', '17:00'),
  ('Riverside', 2, '09:00', '17:00'),
  ('Riverside', 3, '09:00', '17:00'),
  ('Riverside', 4, '09:00', '17:00'),
  ('Riverside', 5, '09:00', '17:00');
INSERT OR IGNORE INTO appointments VALUES
  (1, '+15550100', 'Downtown', '2026-12-10', '10:00', 'booked'),
  (2, '+15550199', 'Riverside', '2026-12-04', '15:00', 'booked');
