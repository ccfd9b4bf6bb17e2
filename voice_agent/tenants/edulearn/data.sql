-- EduLearn: its courses and enrolments.
-- Run on every start: keep CREATE TABLE IF NOT EXISTS and INSERT OR IGNORE.
CREATE TABLE IF NOT EXISTS courses (
    code TEXT PRIMARY KEY, title TEXT NOT NULL, keywords TEXT NOT NULL,
    schedule TEXT NOT NULL, start_date TEXT NOT NULL, seats INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS enrolments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, course_code TEXT NOT NULL REFERENCES courses(code),
    caller_id TEXT NOT NULL, UNIQUE (course_code, caller_id)
);

INSERT OR IGNORE INTO courses VALUES
  ('PY101', 'Python Basics', 'python', 'Mondays and Wednesdays, 6 to 8 PM', '2027-01-11', 20),
  ('DS101', 'Data Science 101', 'data science', 'Tuesdays and Thursdays, 7 to 9 PM', '2027-01-12', 15),
  ('WEB101', 'Web Development', 'web website websites', 'Saturdays, 10 AM to 1 PM', '2027-01-16', 2);
INSERT OR IGNORE INTO enrolments VALUES
  (1, 'PY101', '+15550111'),
  (2, 'WEB101', '+15550112'),
  (3, 'WEB101', '+15550113');
