-- Run once by the mariadb image on a fresh volume (docker-compose.yml), after it has created
-- the database `ludex` and the user 'ludex'@'%'. Tests also create databases named ludex_*.
GRANT ALL PRIVILEGES ON `ludex%`.* TO 'ludex'@'%';
FLUSH PRIVILEGES;
