/* The config `vie serve` runs when no -c is given. */
#ifndef VIE_CLI_DEFAULT_CONFIG_H
#define VIE_CLI_DEFAULT_CONFIG_H

extern const char default_config_yaml[];

#endif
