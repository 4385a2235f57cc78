"""Staff reports: patrons, recurring revenue, churn, cohorts, failed payments and votes."""
