DROP INDEX transactions_location_time;
DROP INDEX transactions_device_time;
