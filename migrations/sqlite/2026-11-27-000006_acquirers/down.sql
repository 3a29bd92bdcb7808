DROP TABLE acquirer_sessions;
DROP TABLE acquirer_parameter_sets;
DROP TABLE acquirer_contracts;
DROP TABLE acquirers;
