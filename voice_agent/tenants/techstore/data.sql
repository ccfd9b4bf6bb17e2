-- TechStore's tables and seed rows. Run on every start: keep CREATE TABLE IF NOT EXISTS
-- and INSERT OR IGNORE, so what callers changed is never undone.
CREATE TABLE IF NOT EXISTS policies (name TEXT PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    order_number TEXT PRIMARY KEY, item TEXT NOT NULL, status TEXT NOT NULL,
    delivery_date TEXT
);
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY, name TEXT NOT NULL, keywords TEXT NOT NULL,
    stock INTEGER NOT NULL, price_cents INTEGER NOT NULL
);

INSERT OR IGNORE INTO policies VALUES
  ('returns', 'You can return most items within 30 days of delivery for a full refund, as long as they are in their original packaging. Opened headphones can only be exchanged. Returns are free: we email you a prepaid label.');
INSERT OR IGNORE INTO orders VALUES
  ('12345', 'AeroBook 14 laptop', 'shipped', '2026-12-03'),
  ('67890', 'Nova 8 phone', 'processing', NULL),
  ('55555', 'Lumen 4K monitor', 'delivered', '2026-11-20');
INSERT OR IGNORE INTO products VALUES
  ('AB14', 'AeroBook 14 laptop', 'aerobook laptop laptops notebook', 7, 89900),
  ('PLS1', 'Pulse wireless headphones', 'pulse headphones headphone headset', 0, 14900),
  ('NOV8', 'Nova 8 phone', 'nova phone phones smartphone mobile', 12, 59900),
  ('LUM4', 'Lumen 4K monitor', 'lumen monitor monitors screen display', 3, 32900);
