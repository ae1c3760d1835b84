"""The ClickHouse tables: their migrations, how `spend_totals` is read (`totals`), and the SQL
endpoint through which other processes read an embedded store (`sql_endpoint`)."""
