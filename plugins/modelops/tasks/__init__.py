"""TaskFlow task functions shared by the DAG factories; each is a thin call into ``include/``."""
